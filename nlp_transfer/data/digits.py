"""The offline vision transfer demo's data: scikit-learn's bundled handwritten digits as image folders.

``load_digits`` holds 1,797 real 8x8 greyscale digits (UCI). They are written, upscaled, as PNGs:

- ``<out>/source``: digits 0-4, every image (a seeded 80/20 train/validation split): the task a
  small model learns from scratch;
- ``<out>/target``: digits 5-9, ``shots`` images per class for training, every other one for
  validation: the few-label task the source model transfers to.

    python -m nlp_transfer.data.digits runs/digits
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

SOURCE_CLASSES = (0, 1, 2, 3, 4)  # the rest (5-9) are the target's


def write_digits(out_dir: str | Path, *, size: int = 32, shots: int = 10, seed: int = 0,
                 source_validation: float = 0.2) -> Path:
    """Write ``source/`` and ``target/`` image folders (train/ and validation/, one folder per digit).

    Args:
        out_dir: Where to write; an existing ``source/`` or ``target/`` inside is replaced.
        size: Side of the written PNGs in pixels (the 8x8 digits are upscaled, bicubic).
        shots: Training images per target class.
        seed: Seeds the splits.
        source_validation: Fraction of each source class held out for validation.

    Returns:
        ``out_dir`` as a path.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    for task in ("source", "target"):
        shutil.rmtree(out_dir / task, ignore_errors=True)
    for digit in range(10):
        rows = rng.permutation(np.flatnonzero(digits.target == digit))
        if digit in SOURCE_CLASSES:
            cut = int(round(len(rows) * (1 - source_validation)))
            task = "source"
        else:
            cut = shots
            task = "target"
        for split, part in (("train", rows[:cut]), ("validation", rows[cut:])):
            folder = out_dir / task / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for row in part:
                pixels = (digits.images[row] * (255 / 16)).clip(0, 255).astype(np.uint8)  # values are 0..16
                Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BICUBIC).save(folder / f"{row}.png")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nlp_transfer.data.digits", description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", nargs="?", default="runs/digits")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--shots", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = write_digits(args.out_dir, size=args.size, shots=args.shots, seed=args.seed)
    for task in ("source", "target"):
        counts = {split: sum(1 for _ in (out / task / split).rglob("*.png")) for split in ("train", "validation")}
        print(f"{out / task}: {counts['train']} train, {counts['validation']} validation images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
