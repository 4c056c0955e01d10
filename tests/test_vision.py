"""Image classification: image data (folders, Hub-style Image columns, files listing paths), augmentation,
fresh heads, outputs that plain transformers loads, and the digits transfer demo."""

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Image
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

import nlp_transfer
from nlp_transfer import DataError, RecipeError, load_recipe
from nlp_transfer.tasks.splits import encode_labels
from nlp_transfer.data.files import load_splits
from nlp_transfer.recipe.schema import AugmentConfig
from nlp_transfer.tasks.spec import TaskSpec
from nlp_transfer.models.build import build_task_model
from nlp_transfer.data.images import Augmenter, decode_image_columns, load_image_processor, preprocess_images

from conftest import IMAGE_CLASSES, stripe_image

REPO = Path(__file__).resolve().parents[1]


def _splits(recipe_dict):
    recipe = load_recipe(recipe_dict)
    splits = load_splits(recipe.data, recipe.train.seed)
    return recipe, *encode_labels(splits, recipe.task, recipe.data)


def test_imagefolder_gives_images_and_class_names(image_recipe):
    _, splits, spec = _splits(image_recipe)
    assert {s: len(ds) for s, ds in splits.items()} == {"train": 24, "validation": 12}
    assert isinstance(splits["train"].features["image"], Image)
    assert list(spec.id2label.values()) == list(IMAGE_CLASSES) and spec.problem_type == "single_label_classification"
    row = splits["validation"][0]
    assert row["image"].size == (16, 16) and spec.id2label[row["labels"]] == row["image"].filename.split("/")[-2]


def test_imagefolder_without_validation_holds_out_part_of_train(image_recipe, image_folder):
    (image_folder / "validation").rename(image_folder.parent / "elsewhere")
    _, splits, _ = _splits({**image_recipe, "data": {**image_recipe["data"], "validation_fraction": 0.25}})
    assert {s: len(ds) for s, ds in splits.items()} == {"train": 18, "validation": 6}


def test_missing_image_folder_is_a_clear_error(image_recipe, tmp_path):
    with pytest.raises(DataError, match=r"data.dir: folder not found: '.*nowhere'.*python -m nlp_transfer.data.digits"):
        _splits({**image_recipe, "data": {"source": "imagefolder", "dir": str(tmp_path / "nowhere")}})


def _listing(path: Path, rows) -> str:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("file", "digit"), *rows])
    return str(path)


def test_csv_listing_image_paths_relative_to_the_file(image_recipe, image_folder, tmp_path):
    listed = tmp_path / "lists"
    listed.mkdir()
    rows = {split: [(f"../stripes/{split}/{label}/{i}.png", label) for label in IMAGE_CLASSES for i in range(3)]
            for split in ("train", "validation")}
    files = {split: _listing(listed / f"{split}.csv", split_rows) for split, split_rows in rows.items()}
    recipe_dict = {**image_recipe, "task": {**image_recipe["task"], "image": "file", "label": "digit"},
                   "data": {"files": files}}
    recipe, splits, spec = _splits(recipe_dict)
    decoded = decode_image_columns(splits, "file", recipe.data.files)
    assert isinstance(decoded["train"].features["file"], Image)
    first = decoded["train"][0]["file"]
    assert first.size == (16, 16) and Path(first.filename) == (image_folder / "train" / "horizontal" / "0.png").resolve()

    bad = splits["validation"].map(lambda r: {"file": "../stripes/validation/horizontal/missing.png"})
    with pytest.raises(DataError, match=r"data split 'validation' \(.*validation.csv\), column 'file', row 0: image file "
                                        r"not found: '.*missing.png' \(6 missing in all\)"):
        decode_image_columns(DatasetDict({"validation": bad}), "file", recipe.data.files)


def test_hub_style_image_column_needs_no_decoding(image_recipe):
    images = [stripe_image(label, i) for i, label in enumerate(IMAGE_CLASSES * 2)]
    ds = Dataset.from_dict({"img": images, "label": [0, 1, 0, 1]}).cast_column("label", ClassLabel(names=list(IMAGE_CLASSES)))
    splits = decode_image_columns(DatasetDict({"train": ds}), "img", {})
    assert splits["train"] is ds
    with pytest.raises(DataError, match=r"column 'label': holds ClassLabel.*expected images .* Set task.image"):
        decode_image_columns(DatasetDict({"train": ds}), "label", {})


def test_image_recipe_problems_are_reported_together(image_recipe):
    bad = {**image_recipe, "model": {**image_recipe["model"], "from_scratch": True},
           "data": {"source": "imagefolder", "augment": {"random_resized_crop": 1.5}}, "strategy": {"name": "lora"}}
    with pytest.raises(RecipeError) as info:
        load_recipe(bad)
    problems = "\n".join(info.value.problems)
    assert "data.dir: missing; data.source=imagefolder" in problems
    assert "data.augment.random_resized_crop: got 1.5" in problems
    assert "model.from_scratch: a LoRA adapter is saved without its base weights" in problems
    frozen = {**image_recipe, "data": {**image_recipe["data"], "augment": {"horizontal_flip": True}}, "strategy": {"name": "frozen"}}
    with pytest.raises(RecipeError, match=r"data.augment: strategy frozen computes each training input's features once"):
        load_recipe(frozen)
    text = {"model": {"name": "x"}, "data": {"files": {"train": str(REPO / "nlp_transfer/quickstart_data/train.csv")},
                                             "augment": {"horizontal_flip": True}}, "output": {"dir": "/abs/out"}}
    with pytest.raises(RecipeError, match=r"data.augment: got 'set', which only task.type image-classification reads; "
                                          r"got task.type 'text-classification'"):
        load_recipe(text)


def test_augmentation_changes_training_images_only(image_recipe, tiny_vit_dir):
    image = stripe_image("vertical", 3, size=32)
    augment = Augmenter(AugmentConfig(random_resized_crop=0.5, horizontal_flip=True), seed=0)
    outputs = [np.asarray(augment(image)) for _ in range(8)]
    assert all(o.shape == (32, 32) for o in outputs)
    assert len({o.tobytes() for o in outputs}) == 8  # a new crop every time
    again = Augmenter(AugmentConfig(random_resized_crop=0.5, horizontal_flip=True), seed=0)
    assert all(np.array_equal(o, np.asarray(again(image))) for o in outputs)  # seeded

    recipe, splits, _ = _splits({**image_recipe, "data": {**image_recipe["data"], "augment": {"random_resized_crop": 0.5}}})
    processor = load_image_processor(tiny_vit_dir)
    prepared = preprocess_images(splits, processor, "image", recipe.data.augment, seed=0)
    first, second = prepared["train"][0]["pixel_values"], prepared["train"][0]["pixel_values"]
    assert first.shape == (3, 16, 16) and not torch.equal(torch.as_tensor(first), torch.as_tensor(second))
    expected = processor(splits["validation"][0]["image"].convert("RGB"))["pixel_values"][0]
    np.testing.assert_allclose(np.asarray(prepared["validation"][0]["pixel_values"]), expected, atol=1e-6)
    np.testing.assert_allclose(np.asarray(prepared["validation"][0]["pixel_values"]), expected, atol=1e-6)


def _save_classifier(folder: Path, labels: list[str], backbone: str) -> str:
    spec = TaskSpec("image-classification", dict(enumerate(labels)))
    model = build_task_model(backbone, spec)
    model.save_pretrained(folder)
    load_image_processor(backbone).save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("old, new, kept", [
    (["a", "b", "c"], ["x", "y"], False),  # another size: ignore_mismatched_sizes
    (["a", "b"], ["x", "y"], False),  # same size, other classes: reset by us
    (["x", "y"], ["x", "y"], True),  # the same classes: the head is kept
], ids=["other-size", "same-size-other-labels", "same-labels"])
def test_a_classifier_backbone_gets_a_fresh_head_when_the_classes_differ(old, new, kept, tiny_vit_dir, tmp_path, caplog):
    source = _save_classifier(tmp_path / "source", old, tiny_vit_dir)
    before = AutoModelForImageClassification.from_pretrained(source).classifier.weight.detach()
    with caplog.at_level(logging.INFO, logger="nlp_transfer.models.build"):
        model = build_task_model(source, TaskSpec("image-classification", dict(enumerate(new))))
    assert model.config.id2label == dict(enumerate(new)) and model.classifier.out_features == len(new)
    head = model.classifier.weight.detach()
    if kept:
        assert torch.equal(head, before) and "keeping its 2-class head" in caplog.text
    else:
        assert head.shape != before.shape or not torch.equal(head, before)
        assert f"replacing its {len(old)}-class head ({', '.join(old)}) with a fresh 2-class head (x, y)" in caplog.text
    torch.testing.assert_close(model.vit.embeddings.patch_embeddings.projection.weight,  # the backbone is loaded
                               AutoModelForImageClassification.from_pretrained(source).vit.embeddings.patch_embeddings.projection.weight)


def test_trained_image_classifier_loads_with_pipeline_and_predicts_paths(image_recipe, image_folder, tmp_path, capsys):
    recipe = {**image_recipe, "data": {**image_recipe["data"], "augment": {"random_resized_crop": 0.8, "horizontal_flip": True}},
              "train": {**image_recipe["train"], "epochs": 20}}
    out = nlp_transfer.train(recipe)
    folder = out.output_dir
    assert (folder / "preprocessor_config.json").is_file() and out.metrics["reload_check"]["passed"]
    assert out.metrics["validation"]["accuracy"] == 1.0, out.metrics["validation"]  # stripes are trivially separable
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: image-classification" in card and "5-class" not in card and "2-class image classification" in card

    paths = [str(p) for p in sorted((image_folder / "validation").rglob("*.png"))]
    classifier = pipeline("image-classification", model=str(folder))
    piped = [r[0]["label"] for r in classifier(paths)]
    ours = nlp_transfer.predict(folder, paths)
    assert [r["label"] for r in ours] == piped
    truth = [Path(p).parent.name for p in paths]
    assert np.mean([p == t for p, t in zip(piped, truth)]) == pytest.approx(out.metrics["validation"]["accuracy"])
    assert nlp_transfer.evaluate(folder)["accuracy"] == pytest.approx(out.metrics["validation"]["accuracy"])
    assert type(AutoImageProcessor.from_pretrained(folder)).__name__.startswith("ViTImageProcessor")

    from nlp_transfer.cli import main
    assert main(["predict", str(folder), paths[0]]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["text"] == paths[0] and line["label"] == piped[0]
    with pytest.raises(DataError, match=r"predict: cannot read image '.*nope.png'"):
        nlp_transfer.predict(folder, [str(tmp_path / "nope.png")])


@pytest.mark.integration
def test_digits_transfer_beats_training_from_scratch(tmp_path):
    """The README's vision demo: a ViT learns digits 0-4, then transfers to 5-9 from 10 images per class."""
    from nlp_transfer.data.digits import write_digits

    data = write_digits(tmp_path / "digits")
    recipes = REPO / "recipes" / "digits"
    source = nlp_transfer.train(recipes / "source.yaml", [f"data.dir={data / 'source'}", f"output.dir={tmp_path / 'source'}",
                                                          f"model.name={recipes / 'tiny-vit'}"])
    assert source.metrics["validation"]["accuracy"] > 0.9
    scores = {}
    for strategy in ("full", "frozen"):
        for scratch in (False, True):
            run = nlp_transfer.train(recipes / f"{strategy}.yaml", [
                f"data.dir={data / 'target'}", f"model.name={source.output_dir}", f"model.from_scratch={str(scratch).lower()}",
                f"output.dir={tmp_path / f'{strategy}-{scratch}'}"])
            assert run.metrics["data"] == {"train": 50, "validation": 846}
            scores[strategy, scratch] = run.metrics["validation"]["accuracy"]
    for strategy in ("full", "frozen"):
        assert scores[strategy, False] > scores[strategy, True] + 0.1, scores  # a real, visible transfer gain
