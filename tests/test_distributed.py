"""Multi-process training on CPU: the same command under torchrun, ranks end identical."""

import json
import subprocess
import sys

import yaml


def test_two_processes_on_cpu_end_with_identical_weights(toy_recipe, tmp_path):
    recipe = dict(toy_recipe, train=dict(toy_recipe["train"], epochs=10, batch_size=8))
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "nlp_transfer", "-q", "train", str(recipe_file)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    first, second = metrics["rank_weight_checksums"]
    assert first == second
    # each process saw half the batches: 96 rows / (8 x 2 processes) = 6 optimizer steps per epoch, 10 epochs
    assert metrics["train"]["steps"] == 60
    assert metrics["validation"]["accuracy"] >= 0.75
