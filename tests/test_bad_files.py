"""Damaged files (a truncated weights file, an image that is not whole, a config.json that is not JSON) are clear
errors that name the file and how to replace it: exit 2 from the CLI, nothing trained, no traceback."""

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets import DatasetDict
from PIL import Image

import nlp_transfer
from nlp_transfer import DataError, load_recipe
from nlp_transfer.cli import main as cli_main
from nlp_transfer.data.files import load_splits
from nlp_transfer.data.images import decode_image_columns, load_image_processor, preprocess_images

from conftest import IMAGE_CLASSES, stripe_image, toy_sentences, write_csv

RE_COPY_MODEL = "copy the model folder again from where it came from, or download it again"
RE_COPY_OUTPUT = "copy the output folder again from where it was written, or train it again"


@pytest.fixture(scope="module")
def trained_output(tiny_model_dir, tmp_path_factory) -> Path:
    """A finished output of one short run on the tiny model (tests damage copies of it)."""
    folder = tmp_path_factory.mktemp("bad-files")
    recipe = {
        "model": {"name": tiny_model_dir, "max_length": 32},
        "data": {"files": {"train": write_csv(folder / "train.csv", toy_sentences(32, seed=1)),
                           "validation": write_csv(folder / "validation.csv", toy_sentences(16, seed=2))}},
        "train": {"epochs": 1, "batch_size": 16, "seed": 7},
        "output": {"dir": str(folder / "out")},
    }
    return nlp_transfer.train(recipe).output_dir


def _copy(folder, tmp_path: Path, name: str) -> Path:
    return Path(shutil.copytree(folder, tmp_path / name))


def _truncate(file: Path) -> int:
    """Cut ``file`` to half its bytes; its original size."""
    data = file.read_bytes()
    file.write_bytes(data[:len(data) // 2])
    return len(data)


def _train_recipe(tmp_path: Path, model_dir: Path, trained_output: Path) -> str:
    recipe = yaml.safe_load((trained_output / "recipe.yaml").read_text())
    recipe["model"]["name"], recipe["output"]["dir"] = str(model_dir), str(tmp_path / "new-out")
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def _cli(args: list[str], capsys) -> tuple[int, str]:
    code = cli_main(["-q", *args])
    return code, capsys.readouterr().err


# ------------------------------------------------------------------ 1: truncated model.safetensors

def test_truncated_weights_of_model_name_are_named_with_the_fix(tiny_model_dir, trained_output, tmp_path, capsys):
    model_dir = _copy(tiny_model_dir, tmp_path, "model")
    size = _truncate(model_dir / "model.safetensors")
    code, err = _cli(["train", _train_recipe(tmp_path, model_dir, trained_output)], capsys)
    assert code == 2, err
    assert f"error: '{model_dir / 'model.safetensors'}' is truncated or corrupt ({size // 2:,} bytes, but its header " \
           f"describes {size:,} bytes), so no weights can be read from it; {RE_COPY_MODEL}" in err
    assert "Traceback" not in err and "SafetensorError" not in err
    assert not (tmp_path / "new-out").exists() and not (tmp_path / ".new-out.partial").exists()


@pytest.mark.parametrize("verb", ["predict", "evaluate"])
def test_truncated_weights_of_an_output_folder_are_named_with_the_fix(trained_output, tmp_path, capsys, verb):
    out = _copy(trained_output, tmp_path, "out")
    (out / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes()[:5])
    code, err = _cli([verb, str(out), *(["the food was good"] if verb == "predict" else [])], capsys)
    assert code == 2, err
    assert (f"error: '{out / 'model.safetensors'}' is truncated or corrupt (5 bytes, shorter than a safetensors header), "
            f"so no weights can be read from it; {RE_COPY_OUTPUT} (`nlp-transfer train <its recipe.yaml> --overwrite`)") in err


# ------------------------------------------------------------------ 2: images that are not whole

def _damaged_images(folder: Path) -> list[Path]:
    """Add a CMYK JPEG and an RGBA PNG (both fine) and two damaged PNGs to ``folder``/train; the damaged ones."""
    train = folder / "train" / IMAGE_CLASSES[0]
    stripe_image(IMAGE_CLASSES[0], 90).convert("CMYK").save(train / "cmyk.jpg")
    stripe_image(IMAGE_CLASSES[0], 91).convert("RGBA").save(train / "rgba.png")
    truncated, garbage = train / "truncated.png", train / "garbage.png"
    stripe_image(IMAGE_CLASSES[0], 92).save(truncated)
    _truncate(truncated)
    garbage.write_bytes(np.random.default_rng(0).bytes(300))
    return [truncated, garbage]


def test_damaged_images_of_an_image_folder_are_all_named_before_any_work(image_recipe, image_folder):
    truncated, garbage = _damaged_images(image_folder)
    with pytest.raises(DataError) as info:
        decode_image_columns(_image_splits(image_recipe), "image", {})
    message = str(info.value)
    assert message.startswith("2 unreadable images in the data; nothing was trained. Replace these files with whole "
                              "images (copy them again), or remove them (and their rows):")
    assert f"  - data split 'train': image '{truncated}': truncated or corrupt (Truncated File Read)" in message
    assert (f"  - data split 'train': image '{garbage}': not an image file Pillow can read (no known image format "
            "starts it)") in message
    assert "cmyk.jpg" not in message and "rgba.png" not in message

    for damaged in (truncated, garbage):
        damaged.unlink()
    decoded = decode_image_columns(_image_splits(image_recipe), "image", {})
    prepared = preprocess_images(decoded, load_image_processor(image_recipe["model"]["name"]), "image")
    assert len(prepared["train"]) == 2 * 12 + 2  # the CMYK and the RGBA image still train
    assert np.asarray(prepared["train"]["pixel_values"]).shape[1:] == (3, 16, 16)


def _image_splits(recipe: dict) -> DatasetDict:
    return load_splits(load_recipe(recipe).data, seed=0)


def test_a_damaged_image_listed_in_a_csv_fails_the_cli_with_exit_2(image_recipe, image_folder, tmp_path, capsys):
    truncated, _ = _damaged_images(image_folder)
    rows = [(str(p), p.parent.name) for p in sorted((image_folder / "train").rglob("*.png")) if p.name != "garbage.png"]
    files = {"train": write_csv(tmp_path / "train.csv", rows, header=("file", "label")),
             "validation": write_csv(tmp_path / "validation.csv",
                                     [(str(p), p.parent.name) for p in sorted((image_folder / "validation").rglob("*.png"))],
                                     header=("file", "label"))}
    recipe = {**image_recipe, "task": {**image_recipe["task"], "image": "file"}, "data": {"files": files}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    code, err = _cli(["train", str(tmp_path / "recipe.yaml")], capsys)
    assert code == 2, err
    assert ("error: 1 unreadable image in the data; nothing was trained." in err
            and f"  - {files['train']}, column 'file': image '{truncated}': truncated or corrupt (Truncated File Read)" in err)
    out = Path(recipe["output"]["dir"])
    assert "Traceback" not in err and not out.exists() and not (out.parent / f".{out.name}.partial").exists()


def test_an_image_only_a_full_decode_finds_damaged_is_named_while_preprocessing(image_recipe, image_folder):
    """Pillow's verify reads a JPEG's structure, not its scan data: one cut short there passes the check, and the
    preprocessing, which decodes it, names it."""
    jpeg = image_folder / "validation" / IMAGE_CLASSES[1] / "cut.jpg"
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((16, 16, 3)) * 255).astype(np.uint8)).save(buffer, "JPEG", quality=95)
    jpeg.write_bytes(buffer.getvalue()[:len(buffer.getvalue()) * 3 // 4])
    decoded = decode_image_columns(_image_splits(image_recipe), "image", {})  # passes the check
    with pytest.raises(DataError, match=rf"^image '{jpeg}' is truncated or corrupt \(image file is truncated.*\); "
                                        r"replace it with a whole image \(copy it again\), or remove it \(and its row\)$"):
        preprocess_images(decoded, load_image_processor(image_recipe["model"]["name"]), "image")


# ------------------------------------------------------------------ 3: config.json that is not JSON

def test_a_config_json_that_is_not_json_is_named_with_where_it_breaks(tiny_model_dir, trained_output, tmp_path, capsys):
    model_dir = _copy(tiny_model_dir, tmp_path, "model")
    (model_dir / "config.json").write_text('{\n  "model_type": "bert",\n  oops\n}\n')
    code, err = _cli(["train", _train_recipe(tmp_path, model_dir, trained_output)], capsys)
    assert code == 2, err
    assert (f"error: '{model_dir / 'config.json'}' is not valid JSON (Expecting property name enclosed in double quotes "
            f"at line 3, column 3): the file is damaged or was edited by mistake; {RE_COPY_MODEL}") in err

    out = _copy(trained_output, tmp_path, "out")
    (out / "config.json").write_text('{"architectures": ["BertForSequenceClassification"],}')
    for verb in (["predict", str(out), "nice"], ["evaluate", str(out)]):
        code, err = _cli(verb, capsys)
        assert code == 2, err
        assert (f"error: '{out / 'config.json'}' is not valid JSON (Expecting property name enclosed in double quotes at "
                f"line 1, column 53): the file is damaged or was edited by mistake; {RE_COPY_OUTPUT}") in err
