"""The top-level README of a multi-task output: which folder holds which task, its scores, and how to load it."""

from __future__ import annotations

from pathlib import Path

from ..tasks import TASK_TYPES


def write_multitask_readme(folder: Path, recipe, metrics: dict) -> None:
    """``README.md`` at the top of a multi-task output (each task's folder has its own model card)."""
    info = metrics["multitask"]
    lines = [f"# Multi-task output: {', '.join(info['tasks'])}", "",
             f"One `{recipe.model.name}` encoder trained for {len(info['tasks'])} tasks at once (strategy "
             f"`{recipe.strategy_name}`, `{info['sampling']}` task sampling"
             + (f", T={info['temperature']:g}" if info.get("temperature") else "")
             + f"); the best model was chosen on `{info['selected_on']}` = {metrics['validation'].get(info['selected_on'], float('nan')):.4f}. "
             "Each folder below is a plain transformers model (the shared encoder and that task's head) with its own "
             "model card, `recipe.yaml` and `metrics.json`.", "",
             "| task | folder | type | loss weight | validation |", "|---|---|---|---|---|"]
    for entry in recipe.tasks:
        scores = metrics["tasks"][entry.name]["validation"]
        names = entry.recipe.train.metrics or list(TASK_TYPES[entry.recipe.task.type].default_metrics)
        shown = ", ".join(f"{k} {scores[k]:.4f}" for k in names if k in scores)
        lines.append(f"| {entry.name} | [`{entry.name}/`]({entry.name}/README.md) | {entry.recipe.task.type} | "
                     f"{entry.weight:g} | {shown} |")
    if baselines := metrics.get("single_task_baselines"):
        lines += ["", "## Against single-task training", "",
                  "Each task trained alone with the same model, strategy and training budget "
                  "(`--single-task-baselines`):", "",
                  "| task | metric | single-task | multi-task | delta | single-task train s |", "|---|---|---|---|---|---|"]
        for name, row in baselines["tasks"].items():
            flag = " (negative transfer)" if row["negative_transfer"] else ""
            lines.append(f"| {name} | {row['metric']} | {row['single_task']:.4f} | {row['multi_task']:.4f} | "
                         f"{row['delta']:+.4f}{flag} | {row['single_task_seconds']:.1f} |")
        lines += ["", f"Train time: multi-task {baselines['multi_task_seconds']:.1f} s, single-task runs "
                      f"{baselines['single_task_seconds']:.1f} s in all."]
    first = recipe.tasks[0].name
    lines += ["", "## Use", "",
              "Each task's folder loads like any single-task output: its README shows the transformers and `pipeline()` "
              f"code, and `nlp-transfer predict OUTPUT_DIR/{first} \"...\"` or `nlp-transfer evaluate OUTPUT_DIR/{first}` "
              "work on it.", ""]
    (folder / "README.md").write_text("\n".join(lines), encoding="utf-8")
