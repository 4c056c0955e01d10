"""``nlp-transfer``: a thin command line over the Python API (parse, call, print), one module per verb.

Each verb module has ``add_parser(subparsers)`` (its arguments, ``run`` set as the default) and ``run(args)``
(the exit code). At module level a verb imports only what loads no torch (the recipe loader, the bundled recipes);
the API (``nlp_transfer.api``, which imports the training stack) and other heavy modules are imported inside
``run``, so ``nlp-transfer validate``, ``recipes`` and ``--help`` stay torch-free.
The top of the package: it may import every layer below (through ``nlp_transfer.api`` where the API has the name).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..errors import NlpTransferError, RecipeError
from . import (
    compare,
    evaluate,
    models,
    optimize,
    predict,
    push,
    recipes,
    train,
    tune,
    validate,
)
from ._common import USAGE_ERROR
from ._interrupts import interrupted

# the order of `nlp-transfer --help`
VERBS = (train, validate, evaluate, predict, optimize, push, models, compare, tune, recipes)

__all__ = ["USAGE_ERROR", "VERBS", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad input, 1 for other failures, 128 + the signal after
    Ctrl-C (130) or, during ``train``, SIGTERM (143))."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
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
    except KeyboardInterrupt as exc:  # Ctrl-C (and SIGTERM during train): one line, no traceback
        line, status = interrupted(exc, argv)
    # printed once the interrupted frames are gone: their progress bars have closed (each ends its line) by then
    print(line, file=sys.stderr)
    return status


def build_parser() -> argparse.ArgumentParser:
    """The ``nlp-transfer`` parser: the global options and one subcommand per verb module."""
    parser = argparse.ArgumentParser(prog="nlp-transfer", description="Transfer learning from YAML recipes.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for verb in VERBS:
        verb.add_parser(commands)
    return parser


