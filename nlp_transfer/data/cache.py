"""On-disk cache of model outputs (encoder features, teacher logits), keyed by fingerprints.

An entry is a ``datasets`` folder named by a hash of everything that determines its
content (model weights, tokenizer, data fingerprint, settings). Entries are written to a
temporary sibling and renamed, so a crash never leaves a half entry behind; each carries a content
hash written last and checked on every read, so a damaged entry is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from .._lazy import lazy

torch = lazy("torch")
datasets = lazy("datasets")
np = lazy("numpy")
fingerprint = lazy("datasets.fingerprint")

logger = logging.getLogger(__name__)


def cache_root() -> Path:
    """``$NLP_TRANSFER_CACHE``, else ``~/.cache/nlp_transfer``."""
    return Path(os.environ.get("NLP_TRANSFER_CACHE", Path.home() / ".cache" / "nlp_transfer"))


def weights_fingerprint(module) -> str:
    """A hash of every parameter and buffer (names, shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # reshape: 0-dim buffers (BatchNorm)
    return digest.hexdigest()


def cache_key(*parts) -> str:
    """A stable key for any picklable parts (uses ``datasets``' own hasher)."""
    return fingerprint.Hasher.hash(parts)


def rows_fingerprint(ds) -> str:
    """A hash of a dataset's content (its columns and every value, row by row), independent of how it was made."""
    digest = hashlib.sha256(json.dumps(sorted(ds.column_names)).encode())
    for shard in ds.with_format("arrow").iter(batch_size=4096):
        for column in sorted(shard.column_names):
            for values in _flat_arrays(shard.column(column).combine_chunks()):
                digest.update(values.tobytes())
    return digest.hexdigest()


def _flat_arrays(array) -> list:
    """The numbers of a (nested) arrow array as numpy arrays: each list level's lengths, then the values.
    Computed from the array itself (a slice of a larger table hashes only its own rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = []
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        out.append(pc.list_value_length(array).fill_null(-1).to_numpy(zero_copy_only=False))
        array = pc.list_flatten(array)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type) or pa.types.is_binary(array.type):
        out.append(np.frombuffer("\x00".join(map(str, array.to_pylist())).encode(), dtype=np.uint8))
    else:
        out.append(array.to_numpy(zero_copy_only=False))
    return out


def cached(kind: str, key: str, build: Callable):
    """Load the entry ``kind/key`` or build, save and return it.

    An entry heals: its content hash (``CONTENT_FILE``, written last) is checked on every read; a
    missing, truncated or altered entry is logged, deleted and rebuilt. Concurrent runs building the
    same entry each write a private temporary folder and rename it; the first rename wins.

    Returns:
        The dataset and whether it came from the cache.
    """
    folder = cache_root() / kind / key
    if folder.exists():
        problem = entry_problem(folder)
        if problem is None:
            logger.info("Cache hit: %s", folder)
            return datasets.load_from_disk(str(folder)), True
        logger.warning("Cache entry %s is damaged (%s): deleting it and computing it again", folder, problem)
        _remove(folder)
    dataset = build()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{key}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        dataset.save_to_disk(str(tmp))
        (tmp / CONTENT_FILE).write_text(json.dumps(_content(tmp)))
        tmp.rename(folder)
    except OSError:
        if entry_problem(folder) is not None:  # not another process's whole entry: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(folder)), False


CONTENT_FILE = "content.json"


def entry_problem(folder: Path) -> str | None:
    """Why a cache entry cannot be used (missing marker, other files, other bytes), or None when it is whole."""
    marker = folder / CONTENT_FILE
    try:
        expected = json.loads(marker.read_text())
    except FileNotFoundError:
        return f"no {CONTENT_FILE}: its write did not finish"
    except (OSError, ValueError) as exc:
        return f"{CONTENT_FILE} unreadable ({exc})"
    try:
        found = _content(folder)
    except OSError as exc:
        return f"unreadable ({exc})"
    if found != expected:
        changed = sorted(n for n in {*expected.get("files", {}), *found["files"]}
                         if expected.get("files", {}).get(n) != found["files"].get(n))
        return f"content hash differs for {', '.join(changed) or 'its files'}"
    return None


def _content(folder: Path) -> dict:
    """Every file's size and sha256 (the marker itself excluded)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != CONTENT_FILE:
            digest = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            files[path.relative_to(folder).as_posix()] = f"{path.stat().st_size}:{digest.hexdigest()}"
    return {"files": files}


def _remove(folder: Path) -> None:
    """Move aside, then delete: a reader never sees a half-deleted entry under the key."""
    trash = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.trash")
    try:
        folder.rename(trash)
    except OSError:
        return  # another process moved it first
    shutil.rmtree(trash, ignore_errors=True)
