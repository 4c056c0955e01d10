"""``--single-task-baselines``: each task of a multi-task recipe trained alone, with the same model, strategy and
training budget (its own recipe, ``TaskEntry.recipe``), and the per-task comparison with the multi-task run.

A task whose first metric is lower alone than in the multi-task run gained from the others; one that is
higher alone suffered negative transfer and is flagged. One seed each: a difference of a point or two may be
noise (``nlp-transfer compare`` runs seeds for a firmer answer).
"""

from __future__ import annotations

import copy
import json
import logging
import os

from ..outputs.atomic import write_text_atomic
from ..recipe.multitask import BASELINES_DIR, primary_metrics
from ..recipe.schema import MultiTaskRecipe
from ..training.single import train
from .readme import write_multitask_readme

logger = logging.getLogger(__name__)


def add_single_task_baselines(recipe: MultiTaskRecipe, out) -> dict:
    """Train each task alone into ``<output>/single_task/<task>`` (metrics only) and add the comparison to the
    output's ``metrics.json`` (``single_task_baselines``) and README; return the comparison."""
    primaries = primary_metrics(recipe)
    rows = {}
    for entry in recipe.tasks:
        alone = copy.deepcopy(entry.recipe)
        alone.output.dir = str(out.output_dir / BASELINES_DIR / entry.name)
        alone.output.save, alone.output.overwrite = "metrics", True
        logger.info("Single-task baseline %s: training it alone into %s", entry.name, alone.output.dir)
        got = train(alone).metrics
        metric = primaries[entry.name]
        single, multi = got["validation"][metric], out.metrics["tasks"][entry.name]["validation"][metric]
        rows[entry.name] = {"metric": metric, "single_task": single, "multi_task": multi, "delta": multi - single,
                            "negative_transfer": multi < single, "single_task_seconds": got["train"]["seconds"]}
    summary = {"tasks": rows, "multi_task_seconds": out.metrics["train"]["seconds"],
               "single_task_seconds": round(sum(r["single_task_seconds"] for r in rows.values()), 2),
               "negative_transfer": [name for name, row in rows.items() if row["negative_transfer"]]}
    for name in summary["negative_transfer"]:
        row = rows[name]
        logger.warning("Negative transfer: %s scores %s %.4f in the multi-task run and %.4f alone", name, row["metric"],
                       row["multi_task"], row["single_task"])
    out.metrics["single_task_baselines"] = summary
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank trains; the main one writes
        write_text_atomic(out.output_dir / "metrics.json", json.dumps(out.metrics, indent=2))
        write_multitask_readme(out.output_dir, recipe, out.metrics)
    return summary
