"""What a search leaves in its folder: ``best.yaml`` (a recipe ``train`` takes as it is), ``trials.csv`` and
``study.json`` (every trial), ``report.md`` with the best trials, the parameter importances and two figures."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import warnings
from pathlib import Path

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from ..outputs.atomic import write_text_atomic
from .base import BaseRecipe
from .space import SearchSettings
from .study import INTERRUPTED, REASON, SURPLUS, WORKER
from .trial import SECONDS
from .worker import best_trial

logger = logging.getLogger(__name__)
BEST_RECIPE = "best.yaml"
FIGURES = ("optimization_history.png", "param_importances.png")


def write_report(study: optuna.Study, settings: SearchSettings, base: BaseRecipe, study_dir: Path,
                 storage_name: str) -> dict:
    """Write the study folder's files; return the summary ``study.json`` holds."""
    study_dir.mkdir(parents=True, exist_ok=True)  # a worker that ran no trial (the others took them all) reports too
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS)]
    best = best_trial(study)
    importances = _importances(study)
    summary = {
        "study": study.study_name, "storage": storage_name, "metric": settings.metric, "direction": settings.direction,
        "n_trials": settings.n_trials, "timeout": settings.timeout, "sampler": settings.sampler,
        "pruner": settings.pruner, "seed": settings.seed, "space": settings.raw.get("space"),
        "counts": {state.name.lower(): sum(1 for t in trials if t.state == state and not t.user_attrs.get(INTERRUPTED))
                   for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)},
        "interrupted": sum(1 for t in trials if t.user_attrs.get(INTERRUPTED)),
        "trial_seconds": round(sum(t.user_attrs.get(SECONDS, 0.0) for t in trials), 1),
        "best": _trial_record(best) if best else None,
        "importances": importances,
        "trials": [_trial_record(t) for t in trials],
    }
    write_text_atomic(study_dir / "study.json", json.dumps(summary, indent=1))
    _write_csv(trials, study_dir / "trials.csv")
    if best is not None:
        write_text_atomic(study_dir / BEST_RECIPE, best_recipe_yaml(base, settings, best, len(trials)))
    figures = _figures(study, study_dir)
    write_text_atomic(study_dir / "report.md", _markdown(summary, figures, settings))
    return summary


def best_recipe_yaml(base: BaseRecipe, settings: SearchSettings, best: FrozenTrial, trials: int) -> str:
    """The recipe with the best trial's values, resolved (absolute paths, every default written), with the search in
    ``card.settings_origin`` so that the model card of a run of it says where its settings came from."""
    recipe = base.load(best.params)
    recipe.card.settings_origin = (
        f"chosen by `nlp-transfer tune`: the best of {trials} trials ({settings.sampler} sampler, "
        f"{'no' if settings.pruner == 'none' else settings.pruner} pruner) on validation {settings.metric} ({settings.direction}), {best.value:.4f} in trial {best.number}; "
        f"searched: {', '.join(str(k) for k in (settings.raw.get('space') or {}))}")
    header = (f"# The best settings of `nlp-transfer tune`'s search ({trials} trials): "
              f"validation {settings.metric} = {best.value:.4f}\n"
              + "".join(f"#   {key} = {value}\n" for key, value in best.params.items())
              + f"# Every key resolved; train it as it is:  nlp-transfer train {BEST_RECIPE}\n")
    return header + yaml.safe_dump(recipe.to_dict(), sort_keys=False)


def _trial_record(trial: FrozenTrial) -> dict:
    return {"number": trial.number, "state": "interrupted" if trial.user_attrs.get(INTERRUPTED) else trial.state.name.lower(),
            "value": trial.value, "params": trial.params,
            "evaluations": {str(step): value for step, value in sorted(trial.intermediate_values.items())},
            "seconds": trial.user_attrs.get(SECONDS), "reason": trial.user_attrs.get(REASON),
            "worker": trial.user_attrs.get(WORKER),
            "started": trial.datetime_start.isoformat() if trial.datetime_start else None,
            "finished": trial.datetime_complete.isoformat() if trial.datetime_complete else None}


def _write_csv(trials: list[FrozenTrial], path: Path) -> None:
    keys = sorted({k for t in trials for k in t.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", "value", *keys, "evaluations", "seconds", "worker", "reason"])
    for t in trials:
        record = _trial_record(t)
        writer.writerow([t.number, record["state"], "" if t.value is None else t.value,
                         *(t.params.get(k, "") for k in keys), len(t.intermediate_values), record["seconds"] or "",
                         record["worker"] or "", record["reason"] or ""])
    write_text_atomic(path, buffer.getvalue())


def _importances(study: optuna.Study) -> dict[str, float]:
    """Optuna's parameter importances over the complete trials ({} until there are enough to tell)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (ValueError, RuntimeError, ZeroDivisionError) as error:
        logger.info("No parameter importances yet: %s", error)
        return {}


def _figures(study: optuna.Study, study_dir: Path) -> list[str]:
    """The optimisation history and the importances (or the parallel coordinates when importances cannot be told),
    drawn by ``optuna.visualization.matplotlib``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    drawn = []
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not complete:
        return drawn
    for name, draw in (("optimization_history.png", plots.plot_optimization_history),
                       ("param_importances.png", plots.plot_param_importances),
                       ("parallel_coordinate.png", plots.plot_parallel_coordinate)):
        if name == "parallel_coordinate.png" and "param_importances.png" in drawn:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = draw(study)
            figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
            figure.set_size_inches(8, 5)
            figure.tight_layout()
            figure.savefig(study_dir / name, dpi=100)
            plt.close(figure)
            drawn.append(name)
        except (ValueError, RuntimeError, ZeroDivisionError, IndexError) as error:
            logger.info("Figure %s not drawn: %s", name, error)
    return drawn


def _markdown(summary: dict, figures: list[str], settings: SearchSettings) -> str:
    metric = settings.metric
    done = [t for t in summary["trials"] if t["state"] == "complete"]
    ranked = sorted(done, key=lambda t: t["value"], reverse=settings.direction == "maximize")[:5]
    keys = sorted({k for t in summary["trials"] for k in t["params"]})
    counts = summary["counts"]
    lines = [f"# Search `{summary['study']}`", "",
             (f"{len(summary['trials'])} trials ({counts['complete']} complete, {counts['pruned']} pruned, "
             f"{counts['fail']} failed, {summary['interrupted']} interrupted) on validation `{metric}` "
             f"({summary['direction']}); sampler `{summary['sampler']}`, pruner `{summary['pruner']}`, seed "
             f"{summary['seed']}; {summary['trial_seconds']} s of trials in all. Storage: `{summary['storage']}`."), ""]
    if ranked:
        lines += ["## Best trials", "", "| trial | " + metric + " | " + " | ".join(f"`{k}`" for k in keys) + " | seconds |",
                  "|" + "---|" * (len(keys) + 3)]
        for t in ranked:
            lines.append(f"| {t['number']} | {t['value']:.4f} | " + " | ".join(_cell(t["params"].get(k)) for k in keys)
                         + f" | {t['seconds']} |")
        lines += ["", f"`{BEST_RECIPE}` holds trial {ranked[0]['number']}'s recipe: `nlp-transfer train {BEST_RECIPE}`.", ""]
    if summary["importances"]:
        lines += ["## Parameter importances", "", "| key | importance |", "|---|---|"]
        lines += [f"| `{k}` | {v:.3f} |" for k, v in summary["importances"].items()] + [""]
    failed = [t for t in summary["trials"] if t["state"] in ("fail", "pruned", "interrupted")]
    if failed:
        lines += ["## Pruned, failed and interrupted trials", "", "| trial | state | reason |", "|---|---|---|"]
        lines += [f"| {t['number']} | {t['state']} | {(t['reason'] or '').replace('|', '/')} |" for t in failed] + [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{name}]({name})" for name in figures] + [""]
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.3g}"
    return str(value)
