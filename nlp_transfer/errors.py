"""Exception types, one per kind of problem, so callers can catch precisely."""

from __future__ import annotations

import signal


class NlpTransferError(Exception):
    """Base class of every error this package raises on purpose."""


class RecipeError(NlpTransferError, ValueError):
    """A recipe is invalid. Carries every problem found, not just the first.

    Attributes:
        problems: One human-readable line per problem, each naming the key path.
        source: The recipe file (or ``"<dict>"``) the problems were found in.
    """

    def __init__(self, problems: list[str], source: str = "<recipe>", hint: str | None = None):
        self.problems = list(problems)
        self.source = source
        self.hint = hint
        count = len(self.problems)
        header = f"{source}: {count} problem{'s' if count != 1 else ''} in the recipe:"
        footer = [f"  {hint}"] if hint else []
        super().__init__("\n".join([header, *(f"  - {p}" for p in self.problems), *footer]))


class DataError(NlpTransferError, ValueError):
    """The data named by a recipe cannot be used (missing file, column, labels...)."""


class ModelError(NlpTransferError, ValueError):
    """A model cannot be resolved, loaded or built as the recipe asks."""


class TrainingError(NlpTransferError, RuntimeError):
    """Training cannot go on (non-finite loss, nothing to resume...)."""


class NothingToResumeError(TrainingError, ValueError):
    """``--resume`` found no complete checkpoint to continue from.

    A bad-input error (exit code 2: run without ``--resume``); a kind of ``TrainingError`` so that callers catching
    that keep working.
    """


class ExportError(NlpTransferError, RuntimeError):
    """A saved output folder is missing, incomplete or does not reproduce the trained model."""


class OutputDirError(ExportError, ValueError):
    """``output.dir`` cannot be used: not writable, under a file, not empty, or held by another run.

    A bad-input error (exit code 2); a kind of ``ExportError`` so that callers catching that keep working.
    """


class HubError(NlpTransferError, RuntimeError):
    """Pushing to the Hugging Face Hub failed (no token, bad repo id, refused by the server...)."""


class BundledRecipeError(NlpTransferError, ValueError):
    """A bundled recipe cannot be copied: no bundled recipe has that name, or the destination already exists (exit 2)."""


class RunInterrupted(KeyboardInterrupt):
    """A training run stopped by Ctrl-C (SIGINT) or SIGTERM: not a failure of the recipe.

    A ``KeyboardInterrupt`` (so ``except Exception`` never swallows it). The run keeps its complete checkpoints
    for ``--resume`` and removes everything else it had written; its ``output.dir`` is as it was before the run.

    Attributes:
        signal_number: The signal that stopped the run (``signal.SIGINT`` for Python's own Ctrl-C).
        out_dir: The output folder of the run; None when the run had not started (nothing was written).
        checkpoint: The newest complete checkpoint the run kept (``--resume`` continues from it), or None.
        step: That checkpoint's training step, or None.
    """

    def __init__(self, signal_number: int, out_dir=None, checkpoint=None, step: int | None = None):
        self.signal_number, self.out_dir, self.checkpoint, self.step = signal_number, out_dir, checkpoint, step
        name = signal.Signals(signal_number).name
        if out_dir is None:
            what = f"training was interrupted by {name} before it started: nothing was written"
        elif checkpoint is None:
            what = (f"training of '{out_dir}' was interrupted by {name} before a checkpoint was written, so nothing "
                    "was kept")
        else:
            what = (f"training of '{out_dir}' was interrupted by {name}; its last complete checkpoint is kept: step "
                    f"{step}, in {checkpoint}")
        super().__init__(what)
