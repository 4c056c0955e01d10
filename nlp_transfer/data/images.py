"""Images: image folders and columns, the image processor, augmentation, prediction.

The image path mirrors the text one: where text has a tokenizer, images have the backbone's
image processor (``AutoImageProcessor``: resize, rescale, normalise), passed through the same
slots (strategies' ``tokenizer`` arguments, ``save_pretrained`` into the output). Evaluation
splits are preprocessed once with ``datasets.map`` (cached by fingerprint); a training split
with ``data.augment`` is preprocessed on the fly, so every epoch sees new crops and flips.
Nothing here needs torchvision: without it transformers uses its PIL-based processors.

A damaged image file is named before any work: ``decode_image_columns`` opens every image and has Pillow
verify it (its structure and, for PNG, every chunk's checksum; nothing is decompressed, so this costs a read
of the files, not a decode). What only a full decode can find (a JPEG cut short inside its scan data) is
named by the preprocessing, which decodes each image once, itself.
"""

from __future__ import annotations

import io
import logging
import math
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict, Image, load_dataset
from transformers import AutoImageProcessor, default_data_collator
from transformers.image_processing_base import ImageProcessingMixin

from ..errors import DataError, ModelError
from ..recipe.schema import IMAGEFOLDER, PATHS_RULE
from .columns import column_values

logger = logging.getLogger(__name__)

PIXELS = "pixel_values"
MAX_LISTED = 20  # unreadable images listed one by one; the rest are counted


# ------------------------------------------------------------------------ data
def load_image_folder(folder: str) -> DatasetDict:
    """An ``imagefolder`` dataset: class subfolders under train/ (validation/, test/) or directly under ``folder``."""
    path = Path(folder)
    if not path.is_dir():
        raise DataError(f"data.dir: folder not found: '{path}'; {PATHS_RULE}. For the "
                        "digits demo write it first with `python -m nlp_transfer.data.digits runs/digits`")
    try:
        return load_dataset(IMAGEFOLDER, data_dir=str(path))
    except Exception as exc:  # datasets raises many types; all mean "cannot read this folder"
        raise DataError(f"data.dir: cannot read '{path}' as an image folder ({exc}); expected train/<class>/<image> "
                        "(and validation/, test/ likewise)") from None


def decode_image_columns(splits: DatasetDict, column: str, files: dict[str, str]) -> DatasetDict:
    """Make ``column`` an ``Image`` feature in every split, every image checked readable; file paths resolve
    against the file that lists them.

    Raises:
        DataError: The column holds neither images nor paths, a listed image file is missing, or images are
            truncated or not images at all (every one of them named).
    """
    out = DatasetDict()
    for split, ds in splits.items():
        out[split] = _image_column(ds, split, column, files)
    check_images(out, column, files)
    return out


def _image_column(ds, split: str, column: str, files: dict[str, str]):
    """``ds`` with ``column`` an ``Image`` feature (paths resolved against the listing file's folder)."""
    feature = ds.features.get(column)
    if isinstance(feature, Image):
        return ds
    if getattr(feature, "dtype", None) not in ("string", "large_string"):
        raise DataError(f"data split '{split}', column '{column}': holds {feature}; expected images (an Image "
                        "feature) or image file paths. Set task.image to the image column")
    listing = files.get(split) or files.get("train")
    base = Path(listing).parent if listing else Path.cwd()
    paths = [str(p if p.is_absolute() else (base / p).resolve()) for p in map(Path, column_values(ds, column))]
    missing = [(row, p) for row, p in enumerate(paths) if not Path(p).is_file()]
    if missing:
        row, path = missing[0]
        raise DataError(f"data split '{split}' ({listing or 'Hub data'}), column '{column}', row {row}: image file not "
                        f"found: '{path}' ({len(missing)} missing in all). Paths resolve against the listing file's folder")
    return ds.remove_columns(column).add_column(column, paths).cast_column(column, Image())


def check_images(splits: DatasetDict, column: str, files: dict[str, str]) -> None:
    """Raise one ``DataError`` naming every image of ``column`` (an ``Image`` feature) that Pillow cannot open or
    verify: truncated files, files that are no image at all.

    Pillow's ``verify`` reads each file through without decompressing it: a truncated PNG or garbage is found
    here, before any work; a JPEG cut short inside its scan data only by decoding (``_PixelTransform`` names it).
    """
    problems = []
    for split, ds in splits.items():
        listing = files.get(split)
        values = column_values(ds.cast_column(column, Image(decode=False)), column)
        for row, value in enumerate(values):
            why = _unreadable(value)
            if why:
                problems.append(f"{_image_place(value, split, column, row, listing)}: {why}")
    if problems:
        listed = problems[:MAX_LISTED] + ([f"... and {len(problems) - MAX_LISTED} more"] if len(problems) > MAX_LISTED else [])
        raise DataError(f"{len(problems)} unreadable image{'s' if len(problems) != 1 else ''} in the data; nothing was "
                        "trained. Replace these files with whole images (copy them again), or remove them (and their "
                        "rows):\n" + "\n".join(f"  - {p}" for p in listed))


def _unreadable(value: dict) -> str | None:
    """Why an undecoded image (``{"path", "bytes"}``) cannot be read, or None."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with PILImage.open(_image_source(value)) as image:
            image.verify()
    except UnidentifiedImageError:
        return "not an image file Pillow can read (no known image format starts it)"
    except Exception as exc:  # Pillow reports damage as OSError, SyntaxError, ValueError, EOFError, ...
        return f"truncated or corrupt ({exc or type(exc).__name__})"
    return None


def _image_source(value: dict):
    return io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]


def _image_place(value: dict, split: str, column: str, row: int, listing: str | None) -> str:
    """Where an image is: its file (and the file listing it), else its row of the split (an image stored in the data)."""
    if value.get("path"):
        return f"{listing}, column '{column}': image '{value['path']}'" if listing else f"data split '{split}': image '{value['path']}'"
    return f"data split '{split}', column '{column}', row {row + 1}: an image stored in the data"


def preprocess_images(splits: DatasetDict, processor, column: str, augment=None, seed: int = 0) -> DatasetDict:
    """``pixel_values`` and ``labels`` per split: mapped once (cached), or on the fly for an augmented train split."""
    out = DatasetDict()
    for split, ds in splits.items():
        keep = [c for c in ds.column_names if c != "labels"]
        ds = ds.cast_column(column, Image(decode=False))  # decoded by _PixelTransform, which names a damaged file
        if split == "train" and augment is not None:
            out[split] = ds.with_transform(_PixelTransform(processor, column, Augmenter(augment, seed)))
            continue
        out[split] = ds.map(_PixelTransform(processor, column), batched=True, batch_size=64, remove_columns=keep,
                            desc=f"preprocess {split}")
    return out


class _PixelTransform:
    """Undecoded images -> ``pixel_values`` (decoded as ``datasets`` does, RGB, then the processor), after an optional
    augmentation."""

    def __init__(self, processor, column: str, augment: "Augmenter | None" = None):
        self.processor, self.column, self.augment = processor, column, augment
        self.decoder = Image()

    def __call__(self, batch: dict) -> dict:
        images = [self._decode(value).convert("RGB") for value in batch[self.column]]
        if self.augment is not None:
            images = [self.augment(image) for image in images]
        out = {PIXELS: list(self.processor(images)[PIXELS])}
        if "labels" in batch:
            out["labels"] = batch["labels"]
        return out

    def _decode(self, value: dict):
        try:
            return self.decoder.decode_example(value)
        except Exception as exc:  # Pillow reports damage as OSError, SyntaxError, ValueError, EOFError, ...
            where = f"image '{value['path']}'" if value.get("path") else f"an image stored in column '{self.column}'"
            raise DataError(f"{where} is truncated or corrupt ({exc or type(exc).__name__}); replace it with a whole "
                            "image (copy it again), or remove it (and its row)") from None


class Augmenter:
    """Light training augmentation with PIL and numpy: random resized crop and horizontal flip.

    The crop keeps ``random_resized_crop`` to 1 of the area with an aspect ratio in [3/4, 4/3]
    (torchvision's recipe) and resizes back to the image's size; the processor resizes after.
    """

    def __init__(self, options, seed: int):
        self.options = options
        self.rng = np.random.default_rng(seed)

    def __call__(self, image):
        if self.options.random_resized_crop is not None:
            image = self._crop(image, self.options.random_resized_crop)
        if self.options.horizontal_flip and self.rng.random() < 0.5:
            image = image.transpose(0)  # PIL.Image.Transpose.FLIP_LEFT_RIGHT
        return image

    def _crop(self, image, min_area: float):
        width, height = image.size
        for _ in range(10):
            area = self.rng.uniform(min_area, 1.0) * width * height
            ratio = math.exp(self.rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < w <= width and 0 < h <= height:
                x, y = int(self.rng.integers(0, width - w + 1)), int(self.rng.integers(0, height - h + 1))
                return image.resize((width, height), resample=2, box=(x, y, x + w, y + h))
        return image


def is_image_processor(processor) -> bool:
    """Whether ``processor`` is an image processor (else a tokenizer)."""
    return isinstance(processor, ImageProcessingMixin)


def collate_images(features: list[dict]) -> dict:
    """Stack ``pixel_values`` into one float tensor; other columns as transformers' default collator does."""
    batch = {PIXELS: torch.as_tensor(np.asarray([f[PIXELS] for f in features], dtype=np.float32))}
    rest = [{k: v for k, v in f.items() if k != PIXELS} for f in features]
    return batch | (default_data_collator(rest) if rest[0] else {})


# ---------------------------------------------------------------------- models
def load_image_processor(path: str):
    """The backbone's image processor (``preprocessor_config.json``)."""
    try:
        return AutoImageProcessor.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load an image processor from {path!r}: {exc}. An image model folder needs a "
                         "preprocessor_config.json (its resize and normalisation settings)") from None


# ------------------------------------------------------------------ prediction
@torch.inference_mode()
def image_logits(model, processor, paths: list, *, batch_size: int = 64, progress=None) -> np.ndarray:
    """Logits of a loaded image classifier for image files (or PIL images), one row per path; ``progress(rows)``, when
    given, after each batch.

    Raises:
        DataError: An image file is missing or not an image.
    """
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
    logits = []
    for start in range(0, len(paths), batch_size):
        images = []
        for path in paths[start:start + batch_size]:
            if hasattr(path, "convert"):  # already an image (a dataset row), not a path
                images.append(path.convert("RGB"))
                continue
            try:
                with PILImage.open(path) as image:
                    images.append(image.convert("RGB"))
            except (FileNotFoundError, UnidentifiedImageError, IsADirectoryError) as exc:
                raise DataError(f"predict: cannot read image '{path}': {exc}; give paths of image files") from None
        pixels = torch.as_tensor(np.asarray(processor(images)[PIXELS], dtype=np.float32)).to(device, dtype)
        logits.append(model(pixel_values=pixels).logits.float().cpu().numpy())
        if progress is not None:
            progress(len(images))
    return np.concatenate(logits)
