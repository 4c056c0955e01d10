"""Mixed precision from the recipe; several runs with different settings in one process."""

import pytest

import nlp_transfer


@pytest.mark.parametrize("precision", ["bf16", "no"])
def test_mixed_precision_trains_and_saves_a_model_that_reloads(toy_recipe, tmp_path, precision):
    recipe = dict(toy_recipe, train=dict(toy_recipe["train"], mixed_precision=precision))
    out = nlp_transfer.train(recipe)
    assert out.metrics["validation"]["accuracy"] >= 0.9
    assert out.metrics["reload_check"]["passed"] is True


def test_runs_with_different_precisions_in_one_process(toy_recipe, tmp_path):
    """Accelerate keeps settings in process-wide singletons; each run must get its own."""
    for precision in ("bf16", "no"):
        recipe = dict(toy_recipe, train=dict(toy_recipe["train"], mixed_precision=precision, epochs=1),
                      output={"dir": str(tmp_path / precision)})
        assert nlp_transfer.train(recipe).output_dir.is_dir()
