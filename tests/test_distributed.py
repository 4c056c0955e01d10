"""Multi-process training on CPU: the same command under torchrun, ranks end identical."""

from conftest import train_with_torchrun


def test_two_processes_on_cpu_end_with_identical_weights(toy_recipe, tmp_path):
    recipe = dict(toy_recipe, train=dict(toy_recipe["train"], epochs=10, batch_size=8))
    metrics = train_with_torchrun(recipe, tmp_path, port=29533)
    # each process saw half the batches: 96 rows / (8 x 2 processes) = 6 optimizer steps per epoch, 10 epochs
    assert metrics["train"]["steps"] == 60
    assert metrics["validation"]["accuracy"] >= 0.75
