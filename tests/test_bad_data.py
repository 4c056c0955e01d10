"""Data files that used to train silently on something other than what they say: each is now a clear error (exit 2
from the command line, naming the file, the column, the rows and the values, and the fix), or read as written."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import toy_sentences, write_csv

from nlp_transfer import DataError
from nlp_transfer.cli import main
from nlp_transfer.recipe.schema import DataConfig, TaskConfig
from nlp_transfer.tasks.splits import encode_labels, load_task_splits


def _train_fails(toy_recipe, tmp_path: Path, capsys, train: str, **task) -> str:
    """``nlp-transfer train`` on ``train`` (and the toy validation file): exit 2, nothing written; its message."""
    recipe = {**toy_recipe, "task": {**toy_recipe["task"], **task},
              "data": {"files": {"train": train, "validation": toy_recipe["data"]["files"]["validation"]}},
              "train": {**toy_recipe["train"], "epochs": 1}, "output": {"dir": str(tmp_path / "out")}}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["-q", "train", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith((".out", "out"))]
    return " ".join(err.split())  # one line: the message as words, whatever its wrapping


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_a_label_column_mixing_integers_and_strings_is_refused(toy_recipe, tmp_path, capsys):
    rows = [{"text": t, "label": (1 if y == "positive" else 0) if i < 4 else y}
            for i, (t, y) in enumerate(toy_sentences(12, seed=1))]
    train = _jsonl(tmp_path / "train.jsonl", rows)
    message = _train_fails(toy_recipe, tmp_path, capsys, train)
    assert (f"{train}, column 'label' mixes labels of 2 types: integers (rows 1, 2, 3, 4; e.g. 1, 0) and strings "
            "(rows 5, 6, 7, 8, 9 and 3 more; e.g. 'positive', 'negative'); nothing was trained") in message
    assert "Write every label one way: all as names (strings), or all as integer class ids" in message


def test_a_text_cell_that_is_not_a_string_is_refused_and_word_lists_only_where_words_are_read(toy_recipe, tmp_path,
                                                                                              capsys):
    rows = [{"text": t, "label": y} for t, y in toy_sentences(8, seed=1)]
    rows[1]["text"], rows[2]["text"], rows[3]["text"] = ["a", "list"], {"nested": "object"}, 5
    train = _jsonl(tmp_path / "train.jsonl", rows)
    message = _train_fails(toy_recipe, tmp_path, capsys, train)
    assert "3 cells of the wrong type in the data; nothing was trained" in message
    assert f"{train}, column 'text', row 2: a list (['a', 'list']), not text" in message
    assert f"{train}, column 'text', row 3: an object ({{'nested': 'object'}}), not text" in message
    assert f"{train}, column 'text', row 4: a number (5), not text" in message
    assert 'write a number as a string ("5")' in message

    words = _jsonl(tmp_path / "words.jsonl", [{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]},
                                              {"tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"]}])
    task, data = TaskConfig(type="token-classification"), DataConfig(files={"train": words, "validation": words})
    assert load_task_splits(data, 0, task)["train"]["tokens"][0] == ["EU", "rejects"]  # a list is what tokens hold
    text = _jsonl(tmp_path / "text.jsonl", [{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]},
                                            {"tokens": "Peter Blackburn", "tags": ["B-PER", "I-PER"]}])
    with pytest.raises(DataError, match=r"text\.jsonl, column 'tokens', row 2: text \('Peter Blackburn'\), not a list "
                                        r"of words"):
        load_task_splits(DataConfig(files={"train": text, "validation": words}), 0, task)


def test_a_csv_header_naming_a_column_twice_is_refused(toy_recipe, tmp_path, capsys):
    train = write_csv(tmp_path / "train.csv", [(t, y, "x") for t, y in toy_sentences(12, seed=1)],
                      header=("text", "label", "label"))
    message = _train_fails(toy_recipe, tmp_path, capsys, train)
    assert (f"data.files.train: the header of '{train}' names column 'label' twice (header: text, label, label); "
            "only the first would be read as 'label'. Rename or remove the other 'label' column") in message


def test_text_of_invisible_characters_only_is_an_empty_cell(toy_recipe, tmp_path, capsys):
    rows = toy_sentences(12, seed=1)
    rows[2] = ("\u200b\u200c\u200d", rows[2][1])
    rows[5] = ("\u2060 \ufeff", rows[5][1])
    rows[8] = ("", rows[8][1])
    train = write_csv(tmp_path / "train.csv", rows)
    message = _train_fails(toy_recipe, tmp_path, capsys, train)
    assert "error: 3 empty or missing cells in the data; nothing was trained. Fill or remove these rows:" in message
    assert f"{train}, column 'text', row 3 (line 4): empty text ('\\u200b\\u200c\\u200d': only invisible characters)" in message
    assert f"{train}, column 'text', row 6 (line 7): empty text ('\\u2060 \\ufeff': only invisible characters)" in message
    assert f"{train}, column 'text', row 9 (line 10): empty (no value)" in message


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_csv_text_cells_nan_null_na_none_are_text_and_only_labels_read_them_as_missing(toy_recipe, tmp_path, capsys,
                                                                                       suffix):
    literal = ["null", "NA", "None", "nan", "N/A", "NULL", "12"]
    rows = [(text, "positive" if i % 2 else "negative") for i, text in enumerate(literal)]
    path = tmp_path / f"train{suffix}"
    if suffix == ".tsv":
        path.write_text("".join(f"{text}\t{label}\n" for text, label in [("text", "label"), *rows]))
    else:
        write_csv(path, rows)
    data, task = DataConfig(files={"train": str(path), "validation": str(path)}), TaskConfig()
    splits, spec = encode_labels(load_task_splits(data, 0, task), task, data)
    assert splits["train"]["text"] == literal
    assert [spec.id2label[i] for i in splits["train"]["labels"]] == [y for _, y in rows]

    rows[4] = ("fine", "NA")  # a label spelled NA still reads as missing: it is no class
    message = _train_fails(toy_recipe, tmp_path, capsys, write_csv(tmp_path / "labels.csv", rows))
    assert "labels.csv, column 'label', row 5 (line 6): empty (no value)" in message
    assert "column 'text'" not in message


def test_labels_the_recipe_does_not_name_say_what_the_data_holds(toy_recipe, tmp_path, capsys):
    rows = [(t, y[:3]) for t, y in toy_sentences(12, seed=1)]
    train = write_csv(tmp_path / "train.csv", rows)
    message = _train_fails(toy_recipe, tmp_path, capsys, train, labels=["negative", "positive"])
    assert (f"data split 'train' ({train}), column 'label': the data's labels are not the ones task.labels names. "
            "The data holds 'neg' (6 rows), 'pos' (6 rows); task.labels names ['negative', 'positive'] and not 'neg', "
            "'pos'. Rename those labels in the data to task.labels' names, or set task.labels to the data's labels "
            "(task.labels=[neg,pos])") in message
    assert "never occur in train" not in message

    ids = write_csv(tmp_path / "ids.csv", [(t, i % 3) for i, (t, _) in enumerate(toy_sentences(12, seed=1))])
    message = _train_fails(toy_recipe, tmp_path, capsys, ids, labels=["negative", "positive"])
    assert ("column 'label': label 2 is not a class id of task.labels ['negative', 'positive']: integer labels are ids "
            "0 to 1, one per name in task.labels, in order. The data holds 0 (4 rows), 1 (4 rows), 2 (4 rows). Give "
            "task.labels one name per class id (ids 0 to 2: 3 names), or fix those rows") in message
