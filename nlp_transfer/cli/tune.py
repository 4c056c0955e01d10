"""``nlp-transfer tune RECIPE [KEY=VALUE ...]``: search the recipe's ``tune.space`` with Optuna (``search/``)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    """Add ``tune`` and its options."""
    tune = subparsers.add_parser(
        "tune", help="hyperparameter and strategy search over the recipe's tune.space (Optuna)",
        description="Each trial is a real run of the recipe with the trial's values (metrics only), pruned on its "
                    "evaluations. The study is kept in a storage (default: a journal file in the study folder), so that "
                    "running the command again continues it and workers on other machines can join it. Writes best.yaml, "
                    "trials.csv, study.json and report.md to the study folder.")
    tune.add_argument("recipe", help="a recipe with a tune section (tune.space: the keys to search)")
    tune.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the recipe, e.g. data.limit.train=2000")
    tune.add_argument("--trials", type=int, help="the study's total trials, whatever the number of workers (tune.n_trials)")
    tune.add_argument("--timeout", type=float, metavar="SECONDS", help="no new trial starts after this (tune.timeout)")
    tune.add_argument("--jobs", type=int, default=1, help="worker processes here, the cores split between them")
    tune.add_argument("--storage", help="an RDB URL (sqlite:///study.db, postgresql://...) or a journal file path; "
                                        "default: study.journal in the study folder")
    tune.add_argument("--study", help="the study's name (default: the recipe file's name)")
    tune.add_argument("--out", help="the study folder (default: the recipe's output.dir + '-tune')")
    tune.add_argument("--retrain", action="store_true", help="then train best.yaml into output.dir, exported like train")
    tune.add_argument("--overwrite", action="store_true", help="with --retrain: replace an existing output.dir")
    tune.set_defaults(run=run)


def run(args) -> int:
    """Search; the summary lines come from the workers, the best recipe's path last."""
    from ..api import tune

    result = tune(args.recipe, args.overrides, trials=args.trials, timeout=args.timeout, jobs=args.jobs,
                  storage=args.storage, study=args.study, out=args.out, retrain=args.retrain, overwrite=args.overwrite)
    print(f"Study folder: {result.study_dir} (report.md, best.yaml, trials.csv, study.json)")
    if result.retrained is not None:
        print(f"Trained the best recipe: {result.retrained.output_dir}")
    return 0
