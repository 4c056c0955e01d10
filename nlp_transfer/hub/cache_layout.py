"""Write a model folder into the Hugging Face cache layout, so every Hugging Face tool finds it offline.

The layout is the one ``huggingface_hub`` itself writes (``scan_cache_dir`` and ``hf cache`` read it)::

    <cache>/models--<org>--<name>/
        blobs/<sha256>                          file contents, named by their hash
        snapshots/<revision>/<path>             relative symlinks to the blobs (copies where symlinks fail)
        refs/main                               the revision that ``from_pretrained("<org>/<name>")`` loads

A snapshot appears whole or not at all: it is built in a hidden sibling of ``snapshots/`` at the
same depth (so the relative links stay valid) and renamed into place; ``refs/main`` is written
last, through a temporary file. On failure every blob this call created is removed again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from filelock import FileLock
from huggingface_hub import constants as hub_constants

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
Opener = Callable[[], BinaryIO]  # returns a fresh binary stream of one file's bytes


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir``, else the Hugging Face hub cache (``HF_HUB_CACHE``, ``HF_HOME``/hub, ``~/.cache/huggingface/hub``)."""
    return Path(cache_dir if cache_dir is not None else hub_constants.HF_HUB_CACHE).expanduser()


def repo_folder(cache_dir: Path, repo_id: str) -> Path:
    """``<cache>/models--<org>--<name>``."""
    return cache_dir / f"models--{repo_id.replace('/', '--')}"


def main_snapshot(cache_dir: Path, repo_id: str) -> tuple[str, Path] | None:
    """The revision ``refs/main`` names and its snapshot folder, when that snapshot is present and whole.

    Whole: it has a ``config.json`` and none of its links dangle (a blob deleted by hand).
    """
    repo = repo_folder(cache_dir, repo_id)
    ref = repo / "refs" / "main"
    if not ref.is_file():
        return None
    revision = ref.read_text().strip()
    snapshot = repo / "snapshots" / revision
    if not (snapshot / "config.json").is_file():
        return None
    if any(not p.exists() for p in snapshot.rglob("*")):  # Path.exists follows links: False for a dangling one
        return None
    return revision, snapshot


def write_snapshot(cache_dir: Path, repo_id: str, revision: str, files: Iterable[tuple[str, Opener]],
                   replace: bool = False) -> Path:
    """Store ``files`` (relative POSIX path, opener) as snapshot ``revision`` of ``repo_id`` and point ``refs/main`` at it.

    Args:
        cache_dir: The hub cache folder.
        repo_id: ``<org>/<name>``.
        revision: The snapshot's name (40 hex digits, like a commit hash).
        files: Every file of the model folder. An opener may raise (a corrupt archive member):
            then nothing of this call stays behind and the exception propagates.
        replace: Write even when the cache already holds this revision whole (else that copy is kept:
            another process, e.g. a second rank of a multi-process run, wrote it while this one waited).

    Returns:
        The snapshot folder.
    """
    repo = repo_folder(cache_dir, repo_id)
    lock_dir = cache_dir / ".locks" / repo.name
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / "nlp-transfer-fetch.lock")):
        final = repo / "snapshots" / revision
        if not replace and main_snapshot(cache_dir, repo_id) == (revision, final):
            return final
        # Same depth as snapshots/<revision>, so the relative links ../../blobs/<hash> stay valid after the rename.
        work = repo / f".partial-{uuid.uuid4().hex[:12]}"
        stage = work / revision
        created: list[Path] = []
        fresh = not repo.exists()  # then a failure removes the whole repo folder again
        try:
            (repo / "blobs").mkdir(parents=True, exist_ok=True)
            stage.mkdir(parents=True)
            for relative, opener in files:
                _store(repo, work, stage, relative, opener, created)
            final.parent.mkdir(exist_ok=True)
            if final.exists():  # an incomplete or damaged copy of the same revision: replace it
                shutil.rmtree(final)
            stage.rename(final)
            _write_ref(repo, revision)
        except BaseException:
            for blob in created:
                blob.unlink(missing_ok=True)
            if fresh:
                shutil.rmtree(repo, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    logger.info("Stored %s in the Hugging Face cache: %s", repo_id, final)
    return final


def _store(repo: Path, work: Path, stage: Path, relative: str, opener: Opener, created: list[Path]) -> None:
    """Copy one file into a blob (named by its sha256) and link it from the staged snapshot."""
    parts = Path(relative).parts
    if not parts or Path(relative).is_absolute() or ".." in parts:
        raise ValueError(f"refusing to store {relative!r}: a path inside the model folder was expected")
    tmp = work / f"blob-{uuid.uuid4().hex[:12]}"
    digest = hashlib.sha256()
    with opener() as src, tmp.open("wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
    blob = repo / "blobs" / digest.hexdigest()
    if blob.exists():
        tmp.unlink()
    else:
        tmp.rename(blob)
        created.append(blob)
    link = stage.joinpath(*parts)
    link.parent.mkdir(parents=True, exist_ok=True)
    try:
        link.symlink_to(os.path.relpath(blob, link.parent))
    except OSError:  # no symlinks here (Windows without developer mode): a copy, as huggingface_hub does
        shutil.copyfile(blob, link)


def _write_ref(repo: Path, revision: str) -> None:
    refs = repo / "refs"
    refs.mkdir(exist_ok=True)
    tmp = refs / f".main.{uuid.uuid4().hex[:8]}"
    tmp.write_text(revision)
    os.replace(tmp, refs / "main")
