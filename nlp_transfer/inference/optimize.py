"""``nlp-transfer optimize``: measure every inference variant this machine runs, keep the fastest safe one.

On the output's own validation rows (or a file), each variant (``variants.VARIANTS``) is timed and
scored against the fp32 model: rows/s at the batch size, p50/p99 latency per batch, agreement of
its labels with fp32's, and the task metric. The fastest variant whose metric stays within
``tolerance`` points (100 x the metric) of fp32 is written into ``OUTPUT/optimized/`` with
``optimize.json`` (every variant's numbers and the machine), and the model card gets a section
with the table. ``Predictor``, ``predict`` and ``evaluate`` then use it (``variant="fp32"`` to opt out).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import platform
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict

from ..data.columns import column_values
from ..errors import DataError, NlpTransferError
from ..evaluation.metrics import greater_is_better
from ..outputs.export import find_run_file, publish
from ..recipe.load import load_recipe
from ..tasks import compute_loss, logits_to_predictions
from ..tasks.metrics import compute_metrics, default_metrics
from ..tasks.spec import TaskSpec
from ..tasks.splits import encode_labels, load_task_splits
from ..training.precision import cpu_bf16_flags, cpu_model_name
from .predictor import Predictor
from .variants import (
    OPTIMIZE_FILE,
    OPTIMIZED,
    VARIANTS,
    build_variant,
    save_variant,
    unavailable_reason,
)

logger = logging.getLogger(__name__)

CARD_BEGIN, CARD_END = "<!-- nlp-transfer:optimize -->", "<!-- /nlp-transfer:optimize -->"
DEFAULT_ROWS = 1000


def optimize(output_dir: str | Path, *, rows: int | None = DEFAULT_ROWS, file: str | Path | None = None,
             tolerance: float = 0.5, batch_size: int = 64, repeats: int = 3, variants: list[str] | None = None) -> dict:
    """Measure the inference variants of an output folder and write the selected one into ``optimized/``.

    Args:
        output_dir: A finished output folder (``recipe.yaml`` next to the weights).
        rows: Score and time on the first ``rows`` validation rows (None or 0: all).
        file: Rows from this data file (the recipe's input and label columns) instead of the validation split.
        tolerance: Largest metric loss, in points (100 x the metric), a selected variant may have vs fp32.
        batch_size: Rows per batch, for throughput and latency.
        repeats: Timed passes (after one warm-up); throughput is their median.
        variants: Which to try (default: all of ``VARIANTS``); fp32, the reference, always runs.

    Returns:
        The report written to ``optimized/optimize.json``.

    Raises:
        NlpTransferError: A token-classification output, unknown variants, or no rows to score.
    """
    output_dir = Path(output_dir).expanduser().resolve()
    unknown = sorted(set(variants or []) - set(VARIANTS))
    if unknown:
        raise NlpTransferError(f"optimize --variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    reference = Predictor(output_dir, variant="fp32")
    recipe, inputs, labels, spec = _rows(output_dir, reference, "validation", rows, file)
    metric_names = recipe.train.metrics or default_metrics(spec.type)
    metric = recipe.train.best_metric or metric_names[0]
    stage = output_dir / f".{OPTIMIZED}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    images = reference.kind.modality == "image"
    sample = None if images else _onnx_sample(reference, inputs)
    results, built = {}, {}
    base_logits = None
    for name in ("fp32", *[v for v in VARIANTS if v != "fp32" and (variants is None or v in variants)]):
        reason = unavailable_reason(name, reference.device, images)
        if reason:
            results[name] = {"status": "skipped", "reason": reason}
            logger.info("optimize: %s skipped: %s", name, reason)
            continue
        try:
            model = build_variant(name, reference.model, stage / "build", sample)
        except Exception as exc:  # a variant that cannot be built is reported, never fatal to the others
            results[name] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            logger.warning("optimize: building %s failed: %s", name, exc)
            continue
        predictor = _with_model(reference, model)
        logits, timing = _measure(predictor, inputs, batch_size, repeats)
        base_logits = logits if name == "fp32" else base_logits
        results[name] = {"status": "measured", **timing, **_quality(logits, base_logits, labels, spec, metric_names)}
        built[name] = model
        logger.info("optimize: %s: %.1f rows/s, %s %.4f", name, timing["rows_per_second"], metric, results[name]["metrics"][metric])
    selected = _select(results, metric, tolerance)
    report = {"selected": {"variant": selected, "metric": metric, "tolerance_points": tolerance},
              "rows": {"count": len(inputs), "source": str(file) if file else "validation", "batch_size": batch_size,
                       "repeats": repeats},
              "variants": results, "machine": _machine(reference.device)}
    _write(output_dir, stage, selected, built[selected], reference.processor, report)
    _update_card(output_dir, report)
    return report


def evaluate_variant(output_dir: str | Path, split: str = "validation", variant: str = "auto") -> dict[str, float]:
    """Loss and metrics of a Predictor variant on a split of the output's recipe data (what ``evaluate`` runs
    when an optimized variant is in use)."""
    predictor = Predictor(output_dir, variant=variant)
    recipe, inputs, labels, spec = _rows(Path(output_dir), predictor, split, None, None)
    logits = predictor.logits(inputs, batch_size=2 * recipe.train.batch_size)
    return _scores(logits, labels, spec, recipe.train.metrics or default_metrics(spec.type))


def _rows(output_dir: Path, predictor: Predictor, split: str, rows: int | None, file) -> tuple:
    """(recipe, model inputs, label ids, task spec) of a split of the output's data, or of ``file``."""
    recipe = load_recipe(find_run_file(output_dir) or output_dir / "recipe.yaml")
    spec = TaskSpec(recipe.task.type, dict(predictor.id2label), recipe.task.threshold)
    if spec.kind.per_token:
        raise NlpTransferError(f"optimize: '{output_dir}' is a {spec.type} model; variants are measured on one row of "
                               "logits per input: sequence-level tasks (text classification, multi-label, regression, images)")
    data = recipe.data
    if file is not None:
        path = Path(file).expanduser().resolve()
        data, split = dataclasses.replace(data, source=None, files={"train": str(path), "validation": str(path)},
                                          limit={}), "validation"
    splits = load_task_splits(data, recipe.train.seed, recipe.task)
    if split not in splits:
        raise DataError(f"--split: the recipe's data has no '{split}' split; it has: {', '.join(splits)}")
    ds = splits[split]
    if rows and rows < len(ds):
        ds = ds.select(range(rows))
    names = spec.label_names if spec.kind.named_outputs else None
    encoded, _ = encode_labels(DatasetDict({split: ds}), recipe.task, data, names=names)
    ds = encoded[split]
    inputs = spec.kind.prediction_inputs(ds, recipe, split)
    if not inputs:
        raise DataError(f"optimize: no rows to score in '{file or split}'")
    return recipe, inputs, np.asarray(column_values(ds, "labels")), spec


def _with_model(reference: Predictor, model) -> Predictor:
    """The reference predictor (tokenizer, settings) running another model."""
    predictor = object.__new__(Predictor)
    predictor.__dict__.update(reference.__dict__, model=model)
    return predictor


def _measure(predictor: Predictor, inputs: list, batch_size: int, repeats: int) -> tuple[np.ndarray, dict]:
    """Logits (the first pass, also the warm-up), median throughput of ``repeats`` passes, per-batch latency."""
    logits = predictor.logits(inputs, batch_size=batch_size)
    passes = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        predictor.logits(inputs, batch_size=batch_size)
        passes.append(time.perf_counter() - started)
    latencies = []
    for start in range(0, len(inputs), batch_size):  # a caller's view: one call per batch, tokenization included
        started = time.perf_counter()
        predictor.logits(inputs[start:start + batch_size], batch_size=batch_size)
        latencies.append(time.perf_counter() - started)
    median = statistics.median(passes)
    return logits, {"rows_per_second": round(len(inputs) / median, 2), "seconds": [round(p, 4) for p in passes],
                    "latency_ms": {"p50": round(1000 * float(np.percentile(latencies, 50)), 2),
                                   "p99": round(1000 * float(np.percentile(latencies, 99)), 2),
                                   "batches": len(latencies)}}


def _quality(logits: np.ndarray, base: np.ndarray, labels: np.ndarray, spec: TaskSpec, metric_names: list[str]) -> dict:
    """Agreement with fp32 and the task's scores (always reported, whatever the selection)."""
    predictions, reference = logits_to_predictions(logits, spec), logits_to_predictions(base, spec)
    agreement = None
    if spec.kind.named_outputs:  # classes can agree; scores only differ by so much
        same = predictions == reference
        agreement = round(float((same.all(-1) if same.ndim == 2 else same).mean()), 6)
    return {"label_agreement": agreement, "max_abs_logit_diff": round(float(np.abs(logits - base).max()), 6),
            "metrics": _scores(logits, labels, spec, metric_names)}


def _scores(logits: np.ndarray, labels: np.ndarray, spec: TaskSpec, metric_names: list[str]) -> dict[str, float]:
    scores = {"loss": compute_loss(torch.from_numpy(logits), torch.from_numpy(labels), spec).item()}
    scores.update(compute_metrics(metric_names, spec.type, logits_to_predictions(logits, spec), labels, spec.num_labels,
                                  label_names=spec.label_names))
    return scores


def _select(results: dict, metric: str, tolerance: float) -> str:
    """The fastest measured variant whose ``metric`` is at most ``tolerance`` points worse than fp32's."""
    base = results["fp32"]["metrics"][metric]
    sign = 1.0 if greater_is_better(metric) else -1.0
    for name, result in results.items():
        if result["status"] != "measured":
            continue
        delta = round(100 * sign * (result["metrics"][metric] - base), 4)
        result["metric_delta_points"] = delta
        result["within_tolerance"] = delta >= -tolerance
    eligible = [n for n, r in results.items() if r.get("within_tolerance")]
    return max(eligible, key=lambda n: results[n]["rows_per_second"])


def _write(output_dir: Path, stage: Path, selected: str, model, processor, report: dict) -> None:
    """``optimized/`` appears whole: the selected variant and its report, staged then renamed into place."""
    build = stage / "build"
    final = stage / "out"
    save_variant(selected, model, processor, final)
    for name, result in report["variants"].items():
        result["selected"] = name == selected
    (final / OPTIMIZE_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
    shutil.rmtree(build, ignore_errors=True)
    publish(final, output_dir / OPTIMIZED)
    shutil.rmtree(stage, ignore_errors=True)
    logger.info("optimize: %s selected; wrote %s", selected, output_dir / OPTIMIZED)


def _onnx_sample(predictor: Predictor, inputs: list) -> dict:
    """Two rows, one padded: an ONNX trace must see the attention mask in use."""
    rows = inputs[:2] if len(inputs) > 1 else inputs * 2
    pairs = isinstance(rows[0], (tuple, list))
    columns = [list(map(str, c)) for c in zip(*rows)] if pairs else [[str(r) for r in rows]]
    encoded = predictor.processor(*columns, truncation=True, max_length=predictor.max_length)
    longest = max(len(ids) for ids in encoded["input_ids"])
    return dict(predictor.processor.pad(encoded, padding="max_length", max_length=longest + 1, return_tensors="pt"))


def _machine(device: torch.device) -> dict:
    import importlib.metadata as md

    def version(dist):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model_name(),
            "cpu_bf16_flags": list(cpu_bf16_flags()), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "onnxruntime": version("onnxruntime"), "python": platform.python_version()}


def _update_card(output_dir: Path, report: dict) -> None:
    """Put (or replace) the optimize section of the output's model card."""
    card = output_dir / "README.md"
    if not card.is_file():
        return
    text = card.read_text(encoding="utf-8")
    if CARD_BEGIN in text and CARD_END in text:
        text = text[:text.index(CARD_BEGIN)].rstrip("\n") + text[text.index(CARD_END) + len(CARD_END):]
    tmp = card.with_name(".README.md.partial")
    tmp.write_text(text.rstrip("\n") + "\n\n" + card_section(report) + "\n", encoding="utf-8")
    tmp.replace(card)


def card_section(report: dict) -> str:
    """The model card's markdown for an optimize report."""
    sel = report["selected"]
    metric, rows = sel["metric"], report["rows"]
    base = report["variants"]["fp32"]["rows_per_second"]
    lines = [CARD_BEGIN, "## Optimized inference", "",
             f"`nlp-transfer optimize` measured each inference variant on {rows['count']:,} {rows['source']} rows "
             f"(batch {rows['batch_size']}, {report['machine']['device']}, {report['machine']['torch_threads']} threads) "
             f"and selected **{sel['variant']}**: the fastest whose {metric} stays within {sel['tolerance_points']} "
             "points of fp32. `nlp_transfer.Predictor` and `nlp-transfer predict` / `evaluate` use it from "
             "`optimized/`; `--variant fp32` (Python: `variant=\"fp32\"`) runs the saved fp32 weights.", "",
             f"| variant | rows/s | vs fp32 | latency p50 / p99 per batch | label agreement with fp32 | {metric} | "
             "change (points) | |", "|---|---|---|---|---|---|---|---|"]
    for name, r in report["variants"].items():
        if r["status"] != "measured":
            lines.append(f"| {name} | | | | | | | {r['status']}: {r['reason']} |")
            continue
        agreement = "n/a" if r["label_agreement"] is None else f"{100 * r['label_agreement']:.2f} %"
        note = "**selected**" if r.get("selected") else ("within tolerance" if r["within_tolerance"] else "outside tolerance")
        lines.append(f"| {name} | {r['rows_per_second']:,.1f} | {r['rows_per_second'] / base:.2f}x | "
                     f"{r['latency_ms']['p50']:.1f} / {r['latency_ms']['p99']:.1f} ms | {agreement} | "
                     f"{r['metrics'][metric]:.4f} | {r['metric_delta_points']:+.2f} | {note} |")
    lines.append(CARD_END)
    return "\n".join(lines)
