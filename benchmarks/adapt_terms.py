"""The size of the domain-adaptation terms and the importance weights on real features, before any training.

Encodes the first N reviews of two Amazon domains' ``train.jsonl`` with the untrained task model on
all-MiniLM-L6-v2 (mean pooling, as the bundled recipes), then reports, on batches of 32 source + 32 target rows
(the recipes' 64-row steps): each alignment term, and the norm of its gradient at the pooled features against
the task loss's (cross-entropy of the freshly initialised head on the source rows). Then the importance weights
of ``adapt.instance_weights: domain_classifier`` on all N + N rows: the in-sample estimate this package used
before (one fit on every row, ratio clipped then normalised) and the cross-fitted one with the exponent chosen
(null) and fixed at 1. No training; about two minutes on two CPU cores.

    python benchmarks/adapt_terms.py --rows 600 --max-length 128
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "amazon_domains"
sys.path.insert(0, str(ROOT))

from nlp_transfer.adapt import DEFAULT_WEIGHTS  # noqa: E402
from nlp_transfer.adapt.losses import coral, mmd  # noqa: E402
from nlp_transfer.adapt.weights import effective_share, estimate_importance_weights, fit_domain_classifier  # noqa: E402


def _features(model, tokenizer, rows: list[dict], max_length: int) -> torch.Tensor:
    from nlp_transfer.models.build import pooled_features

    out = []
    with torch.no_grad():
        for start in range(0, len(rows), 32):
            batch = tokenizer([r["text"] for r in rows[start:start + 32]], truncation=True, max_length=max_length,
                              padding=True, return_tensors="pt")
            out.append(pooled_features(model, dict(batch), "mean"))
    return torch.cat(out)


def _terms(model, source, target, labels, batches: int = 20, seed: int = 0) -> dict:
    """Per method: the term and its gradient norm at the features, averaged over random 32 + 32 batches."""
    from nlp_transfer.models.build import head_logits

    generator = torch.Generator().manual_seed(seed)
    sums: dict = {}
    for _ in range(batches):
        i = torch.randperm(len(source), generator=generator)[:32]
        j = torch.randperm(len(target), generator=generator)[:32]
        s, t = source[i].clone().requires_grad_(True), target[j].clone().requires_grad_(True)
        task = torch.nn.functional.cross_entropy(head_logits(model, s), labels[i])
        task.backward()
        values = {"task": (task.item(), s.grad.norm().item())}
        for name, term in (("coral", coral), ("mmd", mmd)):
            s, t = source[i].clone().requires_grad_(True), target[j].clone().requires_grad_(True)
            value = term(s, t)
            value.backward()
            values[name] = (value.item(), torch.cat([s.grad, t.grad]).norm().item())
        for name, (value, grad) in values.items():
            total = sums.setdefault(name, [0.0, 0.0])
            total[0] += value / batches
            total[1] += grad / batches
    task_grad = sums["task"][1]
    return {name: {"value": float(f"{v:.3g}"), "grad_norm": float(f"{g:.3g}"), "grad_vs_task": float(f"{g / task_grad:.3g}"),
                   **({"default_weight": DEFAULT_WEIGHTS[name],
                       "weighted_grad_vs_task": float(f"{DEFAULT_WEIGHTS[name] * g / task_grad:.3g}")}
                      if name in DEFAULT_WEIGHTS else {})}
            for name, (v, g) in sums.items()}


def _in_sample_weights(source, target, clip: float) -> dict:
    """The estimate before cross-fitting: one fit on all rows, p/(1-p) clipped to [1/clip, clip], then mean 1."""
    p = fit_domain_classifier(source, target)(source).clamp(1e-6, 1 - 1e-6)
    weights = (p / (1 - p)).clamp(1 / clip, clip)
    weights = weights / weights.mean()
    predict = fit_domain_classifier(source, target)
    accuracy = ((predict(source) < 0.5).double().mean() + (predict(target) >= 0.5).double().mean()).item() / 2
    return {"min": round(weights.min().item(), 4), "max": round(weights.max().item(), 4),
            "effective_sample_share": round(effective_share(weights), 4), "domain_accuracy_in_sample": round(accuracy, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="books")
    parser.add_argument("--target", default="kitchen")
    parser.add_argument("--rows", type=int, default=600, help="first N reviews of each domain's train.jsonl")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--clip", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    from transformers import AutoTokenizer

    from nlp_transfer.models.files import resolve_model_path
    from nlp_transfer.models.build import build_task_model
    from nlp_transfer.tasks.spec import TaskSpec

    path = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    model = build_task_model(path, TaskSpec("text-classification", {0: "negative", 1: "positive"}), pooling="mean").eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    started = time.time()
    rows = {d: [json.loads(line) for line in (DATA / d / "train.jsonl").open()][:args.rows]
            for d in (args.source, args.target)}
    source, target = (_features(model, tokenizer, rows[d], args.max_length) for d in (args.source, args.target))
    labels = torch.tensor([r["label"] for r in rows[args.source]])
    report = {"rows": args.rows, "max_length": args.max_length, "feature_std_per_dim": round(source.std(0).mean().item(), 4),
              "terms_32_plus_32": _terms(model, source, target, labels)}
    source, target = source.double(), target.double()
    report["weights_in_sample_before"] = _in_sample_weights(source, target, args.clip)
    for name, exponent in (("weights_cross_fitted_exponent_chosen", None), ("weights_cross_fitted_exponent_1", 1.0)):
        report[name] = estimate_importance_weights(source, target, args.clip, exponent).summary()
    report["seconds"] = round(time.time() - started)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
