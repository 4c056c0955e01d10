"""Multi-process training on CPU: the same command under torchrun, ranks end identical."""

from conftest import train_with_torchrun


def test_two_processes_on_cpu_end_with_identical_weights(toy_recipe, tmp_path):
    recipe = dict(toy_recipe, train=dict(toy_recipe["train"], epochs=10, batch_size=8))
    metrics = train_with_torchrun(recipe, tmp_path, port=29533)
    # each process saw half the batches: 96 rows / (8 x 2 processes) = 6 optimizer steps per epoch, 10 epochs
    assert metrics["train"]["steps"] == 60
    assert metrics["validation"]["accuracy"] >= 0.75


def test_self_training_rounds_under_two_processes_end_with_identical_weights(toy_recipe, tmp_path):
    """A round prepares the trained model again (a fresh optimizer and, here, a fresh DDP wrapper); the ranks must
    agree on the pseudo-labels (every rank gathers every target row's logits) and end identical."""
    from test_adapt import _target_rows, _write_jsonl

    target = _write_jsonl(tmp_path / "target.jsonl", _target_rows(40, seed=5))
    recipe = dict(toy_recipe, train=dict(toy_recipe["train"], epochs=2, batch_size=8, mixed_precision="no"),
                  adapt={"target": {"files": [target]}, "self_training": {"rounds": 1, "keep": 0.5}, "eval_rows": 16})
    metrics = train_with_torchrun(recipe, tmp_path, port=29534)
    (round_one,) = metrics["self_training"]["rounds"]
    # 96 source rows / (8 x 2 processes) = 6 steps an epoch; the round's rows (pseudo-labelled + as many source) likewise
    assert metrics["train"]["steps"] == 12 + round_one["steps"]
    assert round_one["source_rows"] == round_one["pseudo_labelled_rows"] > 0
