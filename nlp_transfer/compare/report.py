"""The transfer report of ``nlp-transfer compare``: tables, judgments in words, learning curves.

Judgments use the primary metric (``train.best_metric``, else the first metric), in points
(x100 for scores in [0, 1]), on test when the data has a test split, else validation:

- **transfer gain**: a strategy's mean minus scratch's at the same fraction, with the spread (std)
  of the per-seed differences (same seed, same rows: the differences are paired);
- **negative transfer**: a gain below zero by more than the seed noise: the larger of ``sqrt(std_s^2 + std_scratch^2)``
  and the std of the paired differences (one seed: no noise estimate, any drop is flagged and marked so);
- **sample efficiency**: the smallest fraction at which a strategy's mean reaches scratch's mean on all data;
- **recommendation**: per fraction, the cheapest strategy (train time) within 1 point of the best mean.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

from ..errors import NlpTransferError
from ..tasks import get_task_type

WITHIN_POINTS = 1.0
FEW_STEPS = 50  # a cell with fewer optimizer steps than this gets a note in the report (without --min-steps)
SUGGESTED_MIN_STEPS = 150
CARD_START, CARD_END = "<!-- compare:start -->", "<!-- compare:end -->"


def require_matplotlib() -> None:
    """The figures need matplotlib; say how to get it (or to skip them) before any cell runs."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise NlpTransferError("compare: the report's PNG figures need matplotlib, which is not installed. "
                               "Install it with: pip install 'nlp-transfer[compare]'  (or: pip install matplotlib), "
                               "or pass --no-figures for report.md and report.json only") from None


# ---------------------------------------------------------------------- numbers
def summarize(results: list[dict], metric: str, split: str) -> dict:
    """``{strategy: {fraction: {mean, std, n, train_rows, scores, seeds, train_seconds, ...}}}`` (points)."""
    table: dict = {}
    for r in results:
        if r.get("backbone"):
            continue
        score = points((r.get(split) or r["validation"]).get(metric))
        if score is None:
            continue
        row = table.setdefault(r["strategy"], {}).setdefault(r["fraction"], {"scores": [], "seeds": [], "seconds": [],
                                                                            "train_rows": r["train_rows"]})
        row["scores"].append(score)
        row["seeds"].append(r["seed"])
        row["seconds"].append(r["train_seconds"])
        row.setdefault("step_counts", []).append(r.get("steps"))
        for key in ("peak_rss_mb", "model_mb", "latency_ms_per_row"):
            row.setdefault(key, []).append(r.get(key))
        row["trainable"] = r["parameters"]["trainable"]
        row["total"] = r["parameters"]["total"]
    for rows in table.values():
        for row in rows.values():
            row["mean"] = statistics.fmean(row["scores"])
            row["std"] = statistics.stdev(row["scores"]) if len(row["scores"]) > 1 else 0.0
            row["n"] = len(row["scores"])
            row["train_seconds"] = statistics.fmean(row.pop("seconds"))
            steps = [v for v in row.pop("step_counts") if v is not None]
            row["steps"] = round(statistics.fmean(steps)) if steps else None
            for key in ("peak_rss_mb", "model_mb", "latency_ms_per_row"):
                values = [v for v in row[key] if v is not None]
                row[key] = statistics.fmean(values) if values else None
    return table


def judge(table: dict, baseline: str | None = "scratch") -> dict:
    """Transfer gain, negative transfer, sample efficiency and the recommendation, as numbers and sentences."""
    strategies = [s for s in table if s != baseline]
    fractions = sorted({f for rows in table.values() for f in rows})
    out = {"gain": {}, "negative_transfer": [], "sample_efficiency": {}, "recommendation": {}, "sentences": []}
    base = table.get(baseline) if baseline else None
    if base:
        for s in strategies:
            for f in fractions:
                if f not in table[s] or f not in base:
                    continue
                mine, theirs = table[s][f], base[f]
                paired = dict(zip(theirs["seeds"], theirs["scores"]))
                diffs = [score - paired[seed] for seed, score in zip(mine["seeds"], mine["scores"]) if seed in paired]
                gain = statistics.fmean(diffs) if diffs else mine["mean"] - theirs["mean"]
                spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
                noise = math.sqrt(mine["std"] ** 2 + theirs["std"] ** 2)
                out["gain"].setdefault(s, {})[f] = {"gain": gain, "std": spread, "noise": noise}
                if gain < 0 and -gain > max(noise, spread):
                    out["negative_transfer"].append({"strategy": s, "fraction": f, "gain": gain, "noise": max(noise, spread),
                                                     "single_seed": min(mine["n"], theirs["n"]) < 2})
        top = max(base)
        target = base[top]["mean"]
        for s in strategies:
            reached = [f for f in sorted(table[s]) if table[s][f]["mean"] >= target]
            out["sample_efficiency"][s] = ({"fraction": reached[0], "train_rows": table[s][reached[0]]["train_rows"]}
                                           if reached else None)
    for f in fractions:
        cands = [(s, table[s][f]) for s in table if f in table[s]]
        best = max(row["mean"] for _, row in cands)
        close = [(row["train_seconds"], row["trainable"], s) for s, row in cands if row["mean"] >= best - WITHIN_POINTS]
        seconds, _, pick = min(close)
        out["recommendation"][f] = {"strategy": pick, "mean": table[pick][f]["mean"], "best": best,
                                    "best_strategy": max(cands, key=lambda c: c[1]["mean"])[0], "train_seconds": seconds}
    out["sentences"] = _sentences(table, out, baseline)
    return out


def _sentences(table: dict, verdict: dict, baseline: str | None) -> list[str]:
    lines = []
    for s, by_f in verdict["gain"].items():
        parts = [f"{_pct(f)} ({table[s][f]['train_rows']} rows): {g['gain']:+.1f} ± {g['std']:.1f}" for f, g in sorted(by_f.items())]
        lines.append(f"Transfer gain of **{s}** over {baseline} (points, mean ± std over paired seeds): " + "; ".join(parts) + ".")
    if verdict["gain"]:
        if verdict["negative_transfer"]:
            for n in verdict["negative_transfer"]:
                note = " (one seed: no noise estimate)" if n["single_seed"] else ""
                lines.append(f"**Negative transfer**: {n['strategy']} scores {-n['gain']:.1f} points below {baseline} at "
                             f"{_pct(n['fraction'])}, beyond the seed noise of {n['noise']:.1f}{note}.")
        else:
            lines.append(f"No negative transfer: no strategy scores below {baseline} beyond the seed noise at any fraction.")
        top = max(table[baseline])
        for s, hit in verdict["sample_efficiency"].items():
            if hit:
                lines.append(f"Sample efficiency of **{s}**: reaches {baseline}'s score on all data "
                             f"({table[baseline][top]['mean']:.1f}) with {_pct(hit['fraction'])} of the labels ({hit['train_rows']} rows).")
            else:
                lines.append(f"Sample efficiency of **{s}**: does not reach {baseline}'s score on all data "
                             f"({table[baseline][top]['mean']:.1f}) at any fraction tried.")
    for f, rec in sorted(verdict["recommendation"].items()):
        why = ("the best" if rec["strategy"] == rec["best_strategy"]
               else f"within {WITHIN_POINTS:g} point of the best ({rec['best_strategy']}, {rec['best']:.1f}) and cheaper")
        lines.append(f"Recommendation at {_pct(f)}: **{rec['strategy']}** ({rec['mean']:.1f}; {why}; "
                     f"{rec['train_seconds']:.1f} s to train).")
    return lines


# ---------------------------------------------------------------------- files
def report_metrics(base) -> tuple[list[str], str]:
    """The metrics the report tables (the recipe's, else the task type's; never the loss) and the primary one."""
    metrics = [m for m in base.train.metrics or get_task_type(base.task.type).default_metrics if m != "loss"]
    return metrics, base.train.best_metric if base.train.best_metric in metrics else metrics[0]


def write_report(out: Path, base, grid, pool: dict, results: list[dict], *, rankings=None, failures=None,
                 figures: bool = True) -> dict:
    """Write ``report.json``, ``report.md`` and (``figures``) the PNGs into ``out``; returns the report."""
    metrics, primary = report_metrics(base)
    split = "test" if "test" in pool["splits"] else "validation"
    baseline = "scratch" if grid.baseline == "scratch" else None
    tables = {m: summarize(results, m, split) for m in metrics}
    verdict = judge(tables[primary], baseline) if tables[primary] else {"sentences": []}
    report = {
        "recipe": base.source, "model": base.model.name, "task": base.task.type, "split": split, "primary_metric": primary,
        "metrics": metrics, "strategies": grid.strategies, "baseline": grid.baseline, "fractions": grid.fractions,
        "seeds": grid.seeds, "min_steps": grid.min_steps, "pool_rows": pool["rows"], "cells": len(results), "failed": failures or {},
        "tables": {m: {s: {f"{f:g}": row for f, row in rows.items()} for s, rows in t.items()} for m, t in tables.items()},
        "judgments": _json_keys(verdict), "backbones": rankings, "figures": [],
        "max_load_average": max((max(r["load_average"]) for r in results if r.get("load_average")), default=None),
        "threads": max((r.get("threads") or 0 for r in results), default=None),
    }
    if figures and tables[primary]:
        report["figures"] = _draw(out, tables, primary, split)
    _write(out / "report.json", json.dumps(report, indent=2, default=str))
    _write(out / "report.md", render_markdown(report))
    return report


def render_markdown(report: dict) -> str:
    primary = report["primary_metric"]
    lines = [f"# Transfer report: {report['model']} on {report['recipe']}", "",
             f"Task `{report['task']}`; scores on **{report['split']}** ({report['pool_rows'].get(report['split'])} rows), "
             f"in points; pool of {report['pool_rows']['train']} training rows; fractions "
             f"{', '.join(_pct(f) for f in report['fractions'])}; seeds {', '.join(map(str, report['seeds']))}; "
             f"{report['cells']} cells.", ""]
    if report.get("min_steps"):
        lines += [f"Budget: each cell trains its recipe's epochs, or more whole epochs where that is fewer than "
                  f"{report['min_steps']} optimizer steps (`--min-steps {report['min_steps']}`; steps per cell below).", ""]
    else:
        few = _fewest_steps(report["tables"][primary])
        if few is not None and few[0] < FEW_STEPS:
            lines += [f"Note: the cells at {_pct(float(few[1]))} trained only {few[0]} optimizer steps: their scores measure "
                      f"that budget more than the strategies. Rerun into a new --out with `--min-steps {SUGGESTED_MIN_STEPS}` (more "
                      "epochs where a cell has fewer steps; finished cells are never rerun).", ""]
    load, threads = report.get("max_load_average"), report.get("threads")
    if load is not None and threads and load > threads:
        lines += [f"Note: the machine's 1-minute load average reached {load:.1f} during the cells, above the {threads} "
                  "thread(s) a cell used: other processes competed for the cores, so times are inflated "
                  "(the scores are not affected).", ""]
    lines += ["## Judgments", ""]
    lines += [f"- {s}" for s in report["judgments"].get("sentences", [])]
    lines += ["", f"## {primary} (mean ± std over seeds)", "", _score_table(report["tables"][primary]), ""]
    lines += ["## Cost per cell (means over seeds)", "", _cost_table(report["tables"][primary]), ""]
    for metric in report["metrics"]:
        if metric != primary:
            lines += [f"## {metric}", "", _score_table(report["tables"][metric]), ""]
    if report.get("backbones"):
        lines += ["## Backbones: LogME without fine-tuning vs fine-tuned", "", _backbone_table(report["backbones"]), ""]
    for fig in report["figures"]:
        lines += [f"![{fig}]({fig})", ""]
    if report["failed"]:
        lines += ["## Failed cells", ""] + [f"- {name}: {log}" for name, log in report["failed"].items()] + [""]
    return "\n".join(lines)


def _score_table(table: dict) -> str:
    fractions = sorted({float(f) for rows in table.values() for f in rows})
    head = "| strategy | " + " | ".join(f"{_pct(f)} ({_rows(table, f)} rows)" for f in fractions) + " |"
    body = [head, "|---" * (len(fractions) + 1) + "|"]
    for s, rows in table.items():
        cells = [f"{rows[f'{f:g}']['mean']:.1f} ± {rows[f'{f:g}']['std']:.1f}" if f"{f:g}" in rows else "–" for f in fractions]
        body.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(body)


def _cost_table(table: dict) -> str:
    body = ["| strategy | fraction | steps | train s | peak RSS MB | trainable params | total params | model MB | ms/row predict |",
            "|---|---|---|---|---|---|---|---|---|"]
    for s, rows in table.items():
        for f, row in rows.items():
            body.append(f"| {s} | {_pct(float(f))} | {_fmt(row.get('steps'), 'd')} | {row['train_seconds']:.1f} | "
                        f"{_fmt(row['peak_rss_mb'], '.0f')} | "
                        f"{row['trainable']:,} | {row['total']:,} | {_fmt(row['model_mb'], '.1f')} | {_fmt(row['latency_ms_per_row'], '.2f')} |")
    return "\n".join(body)


def _backbone_table(rankings: dict) -> str:
    body = ["| backbone | LogME | LogME rank | fine-tuned | fine-tuned rank |", "|---|---|---|---|---|"]
    for row in rankings["rows"]:
        tuned = _fmt(row.get("fine_tuned"), ".1f")
        logme = _fmt(row["logme"], ".4f") if row["logme"] is not None else f"– ({row.get('error', 'not computed')})"
        body.append(f"| {row['backbone']} | {logme} | {row.get('logme_rank', '–')} | {tuned} | {row.get('fine_tuned_rank', '–')} |")
    if rankings.get("spearman") is not None:
        body.append(f"\nSpearman rank correlation of LogME and the fine-tuned scores: {rankings['spearman']:.2f}.")
    return "\n".join(body)


def _draw(out: Path, tables: dict, primary: str, split: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    for metric, table in tables.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for s, rows in table.items():
            pts = sorted((row["train_rows"], row["mean"], row["std"]) for row in rows.values())
            x, y, e = zip(*pts)
            ax.plot(x, y, marker="o", label=s, linestyle="--" if s == "scratch" else "-")
            ax.fill_between(x, [a - b for a, b in zip(y, e)], [a + b for a, b in zip(y, e)], alpha=0.2)
        ax.set_xscale("log")
        ax.set(xlabel="labelled training examples (log)", ylabel=f"{metric} on {split} (points)", title=f"Learning curves: {metric}")
        ax.grid(alpha=0.3)
        ax.legend()
        names.append(f"learning_curve_{_safe(metric)}.png")
        fig.tight_layout()
        fig.savefig(out / names[-1], dpi=110)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for s, rows in tables[primary].items():
        ax.scatter([r["train_seconds"] for r in rows.values()], [r["mean"] for r in rows.values()], label=s)
    ax.set_xscale("log")
    ax.set(xlabel="train seconds per cell (log)", ylabel=f"{primary} on {split} (points)", title="Score vs train time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "cost.png", dpi=110)
    plt.close(fig)
    return [*names, "cost.png"]


def write_card_section(folder: Path, report: dict) -> Path:
    """Add (or replace) a "How this compares" section in ``folder/README.md`` with the report's table."""
    card = folder / "README.md"
    if not card.is_file():
        raise NlpTransferError(f"--card: no model card at '{card}'; give an output folder written by nlp-transfer train")
    primary = report["primary_metric"]
    section = "\n".join([CARD_START, "## How this compares", "",
                         f"`nlp-transfer compare` on the same data ({report['split']} {primary}, points, mean ± std over "
                         f"{len(report['seeds'])} seed(s); columns: share of the {report['pool_rows']['train']}-row training pool):", "",
                         _score_table(report["tables"][primary]), "", *[f"- {s}" for s in report["judgments"].get("sentences", [])],
                         CARD_END])
    text = card.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(CARD_START) + ".*?" + re.escape(CARD_END), re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
    _write(card, text)
    return card


# ---------------------------------------------------------------------- helpers
def points(value):
    """A score in points: x100 for one in [-1, 1] (accuracy, F1, Pearson), as is otherwise; None when absent."""
    if value is None or not isinstance(value, (int, float)):
        return None
    return 100 * value if -1 <= value <= 1 else float(value)


def _pct(f: float) -> str:
    return f"{100 * f:g}%"


def _rows(table: dict, f: float):
    for rows in table.values():
        if f"{f:g}" in rows:
            return rows[f"{f:g}"]["train_rows"]
    return "?"


def _fewest_steps(table: dict) -> tuple[int, str] | None:
    """``(steps, fraction)`` of the cell row with the fewest optimizer steps, or None when no row recorded them."""
    rows = [(row["steps"], f) for rows in table.values() for f, row in rows.items() if row.get("steps") is not None]
    return min(rows) if rows else None


def _fmt(value, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _json_keys(value):
    if isinstance(value, dict):
        return {(f"{k:g}" if isinstance(k, float) else k): _json_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_keys(v) for v in value]
    return value


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
