"""One run per output folder: an advisory lock file beside ``output.dir``, taken before any work.

The lock is ``flock`` on ``.<name>.lock`` in the output's parent folder (the same folder as the
run's ``.<name>.partial`` work folder). The kernel releases it when its process dies, however it
dies, so a lock file left behind by a killed run is taken over (with a warning) and never blocks.
The file says who holds it: process id, host, start time and command line.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import OutputDirError

logger = logging.getLogger(__name__)


def lock_path(out_dir: Path) -> Path:
    """The lock file of an output folder: ``.<name>.lock`` beside it."""
    return out_dir.parent / f".{out_dir.name}.lock"


class RunLock:
    """The lock of one output folder, held from ``acquire`` to ``release`` (or the process's end).

    Example:
        >>> with RunLock(Path("runs/sst2")):
        ...     ...  # train into runs/sst2
    """

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.path = lock_path(self.out_dir)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or fail at once.

        Raises:
            OutputDirError: Another live process holds it, or the output's parent folder cannot be
                created or written (under a file, no permission).
        """
        import fcntl

        _make_parent(self.out_dir)
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputDirError(_unusable(self.out_dir, exc)) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise OutputDirError(_unusable(self.out_dir, exc)) from None
                raise OutputDirError(self._held_message(holder)) from None
            # a holder that released the lock unlinks the file first: a lock on an unlinked file is no lock
            if _same_file(fd, self.path):
                break
            os.close(fd)
        previous = _read_holder(fd)
        if previous.get("pid"):
            logger.warning("Taking over the lock %s: its holder (process %s on %s, started %s) is no longer running; it "
                           "was probably killed. Its work folder, if any, is handled as for any interrupted run",
                           self.path, previous.get("pid"), previous.get("host"), previous.get("started"))
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}).encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock and remove its file (only while holding it: the file is ours)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _held_message(self, holder: dict) -> str:
        who = (f"process {holder['pid']} on {holder.get('host', '?')} (started {holder.get('started', '?')}: "
               f"{holder.get('command', '?')})") if holder.get("pid") else "another process"
        return (f"output.dir: '{self.out_dir}' is in use by another run: {who} holds {self.path}. Wait for that run "
                "to finish (or stop it), or choose another output.dir")


def _make_parent(out_dir: Path) -> None:
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(_unusable(out_dir, exc)) from None


def _unusable(out_dir: Path, exc: OSError) -> str:
    blocker = next((p for p in [out_dir, *out_dir.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        reason = f"'{blocker}' is a file, not a folder"
    elif isinstance(exc, PermissionError):
        writable = next((p for p in out_dir.parents if p.exists()), out_dir.parent)
        reason = f"no permission to write in '{writable}'"
    else:
        reason = exc.strerror or str(exc)
    return f"output.dir: cannot write '{out_dir}': {reason}. Choose an output.dir in a folder you can write to"


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 65536).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
