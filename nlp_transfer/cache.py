"""On-disk cache of model outputs (encoder features, teacher logits), keyed by fingerprints.

An entry is a ``datasets`` folder named by a hash of everything that determines its
content (model weights, tokenizer, data fingerprint, settings). Entries are written to a
temporary sibling and renamed, so a crash never leaves a half entry behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from ._lazy import lazy

torch = lazy("torch")
datasets = lazy("datasets")
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


def cached(kind: str, key: str, build: Callable):
    """Load the entry ``kind/key`` or build, save and return it.

    Returns:
        The dataset and whether it came from the cache.
    """
    folder = cache_root() / kind / key
    if (folder / "dataset_info.json").is_file():
        logger.info("Cache hit: %s", folder)
        return datasets.load_from_disk(str(folder)), True
    dataset = build()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{key}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        dataset.save_to_disk(str(tmp))
        tmp.rename(folder)
    except OSError:
        if not (folder / "dataset_info.json").is_file():  # another process won the race: fine
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(folder)), False
