"""``image-classification``: one class per image, through transformers vision backbones.

Where text has a tokenizer, images have the backbone's image processor (``AutoImageProcessor``),
passed through the same slots; data decoding, preprocessing and augmentation are in ``vision.py``.
"""

from __future__ import annotations

import importlib.util
import json

from ..data.checks import IMAGE
from ..recipe.schema import IMAGEFOLDER
from .base import TaskType

IMAGE_EXAMPLE = "path/to/image.png"


class ImageClassification(TaskType):
    """Classify images (``task.image``: an ``Image`` column or image paths)."""

    name = "image-classification"
    display_name = "Image Classification"
    pipeline_tag = "image-classification"
    modality = "image"
    input_cell = IMAGE
    peft_auto_class = None  # peft has no Auto class for image heads: PeftModel on the base classifier
    pools = False  # the backbone's own head features: the [CLS] token or the pooled output
    takes_unlabeled = False
    peft_task_type = None  # the generic PeftModel (the sequence-classification one passes input_ids)
    reads = frozenset({"data.dir", "data.augment"})

    def input_columns(self, task) -> list[str]:
        return [task.image]

    def validate(self, recipe) -> list[str]:
        data, problems = recipe.data, super().validate(recipe)
        if importlib.util.find_spec("PIL") is None:
            problems.append(f"task.type: {self.name} needs Pillow to read images; `pip install 'nlp-transfer[vision]'`")
        if data.source == IMAGEFOLDER and not data.dir:
            problems.append("data.dir: missing; data.source=imagefolder reads a folder with train/ (and validation/, test/) "
                            "subfolders holding one folder of images per class, e.g. data.dir=runs/digits/target")
        if data.dir and data.source != IMAGEFOLDER:
            problems.append(f"data.dir: only data.source=imagefolder reads it; got data.source {data.source!r}. "
                            "Set data.source=imagefolder or remove data.dir")
        crop = data.augment.random_resized_crop if data.augment is not None else None
        if crop is not None and not 0 < crop <= 1:
            problems.append(f"data.augment.random_resized_crop: got {crop}; expected the smallest crop area as a "
                            "fraction of the image in (0, 1], e.g. 0.8")
        return problems

    # -------------------------------------------------------------------- data
    def load_processor(self, path, trust_remote_code=False):
        from ..data.images import load_image_processor

        return load_image_processor(path)

    def preprocess(self, splits, processor, recipe, *, augment: bool = True, carry: tuple[str, ...] = ()):
        """``pixel_values`` per split; the training split augmented on the fly as ``data.augment`` asks (no raw columns
        to ``carry``: strategies read raw text only)."""
        from ..data.images import decode_image_columns, preprocess_images

        splits = decode_image_columns(splits, recipe.task.image, recipe.data.files)
        return preprocess_images(splits, processor, recipe.task.image, recipe.data.augment if augment else None,
                                 recipe.train.seed), {}

    def collator(self, processor):
        from ..data.images import collate_images

        return collate_images

    # ------------------------------------------------------------------ models
    def auto_class(self):
        from transformers import AutoModelForImageClassification

        return AutoModelForImageClassification

    def features(self, model, batch, pooling):
        from ..models.image_heads import image_features

        return image_features(model, batch)

    def predict_logits(self, model, processor, inputs, *, batch_size, max_length, device, progress=None):
        from ..data.images import image_logits

        return image_logits(model, processor, list(inputs), batch_size=batch_size, progress=progress)

    def prediction_inputs(self, ds, recipe, split: str = "validation") -> list:
        from datasets import DatasetDict

        from ..data.images import decode_image_columns

        return list(decode_image_columns(DatasetDict({split: ds}), recipe.task.image, recipe.data.files)[split][recipe.task.image])

    # -------------------------------------------------------------------- card
    def phrase(self, spec, recipe) -> str:
        return f"{spec.num_labels}-class image classification"

    def intended_use(self, spec) -> str:
        return f"sorting images into {', '.join(f'`{n}`' for n in spec.label_names)}"

    def example(self, recipe) -> str:
        return json.dumps(IMAGE_EXAMPLE)

    def example_args(self, recipe) -> str:
        return json.dumps(IMAGE_EXAMPLE)
