"""Ctrl-C and SIGTERM: one line that says what stopped and how to go on, exit status 128 + the signal, no traceback.

During ``train`` both signals stop the run the same way (``RunInterrupted`` in the main thread); the run keeps its
complete checkpoints (``training/session.py``) and the line gives the exact command that continues from them.
"""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import RunInterrupted

STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PROGRAM = "nlp-transfer"


@contextmanager
def signals_stop_the_run(enabled: bool = True) -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise ``RunInterrupted`` in the main thread; the previous handlers
    come back afterwards.

    The first signal stops the run; a second one ends the process at once (the default action), as ``kill -9``
    would: the complete checkpoints are safe either way. The handler only raises: no collective, no I/O.

    Args:
        enabled: False leaves the signals alone (the other ranks of a multi-process launch: their launcher stops them).
    """
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in STOPPING_SIGNALS}

    def stop(signal_number, frame):
        for number in STOPPING_SIGNALS:
            signal.signal(number, signal.SIG_DFL)
        raise RunInterrupted(signal_number)

    for number in STOPPING_SIGNALS:
        signal.signal(number, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def interrupted(exc: KeyboardInterrupt, argv: list[str]) -> tuple[str, int]:
    """The line to print and the exit status (128 + the signal, as a shell reports it) after an interrupt.

    Args:
        exc: A ``RunInterrupted`` from ``train``, or Python's own ``KeyboardInterrupt`` (Ctrl-C anywhere else).
        argv: The command's arguments (without the program name), to say the exact command that continues.
    """
    signal_number = getattr(exc, "signal_number", signal.SIGINT)
    status = 128 + signal_number
    if not isinstance(exc, RunInterrupted):
        return f"interrupted by {signal.Signals(signal_number).name}", status
    if next((a for a in argv if not a.startswith("-")), None) != "train":  # a `tune` trial: the same command continues
        return f"{exc}. The same command continues: {shlex.join([PROGRAM, *argv])}", status
    if exc.checkpoint is not None:
        again = [*argv, "--resume"] if "--resume" not in argv else argv
        return f"{exc}. To continue from it: {shlex.join([PROGRAM, *again])}", status
    return f"{exc}. To start again: {shlex.join([PROGRAM, *(a for a in argv if a != '--resume')])}", status
