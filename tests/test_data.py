"""Data: loading splits, encoding labels, tokenizing, and the length-grouped batch sampler."""

import json
import random
import statistics

import pytest
from conftest import toy_sentences, write_csv
from datasets import Dataset, DatasetDict

from nlp_transfer.data import files as data_files
from nlp_transfer import DataError
from nlp_transfer.data.sampling import longest_first
from nlp_transfer.data.sampling import LengthGroupedBatchSampler
from nlp_transfer.tasks.splits import encode_labels
from nlp_transfer.data.files import load_splits
from nlp_transfer.data.loaders import tokenize_splits
from nlp_transfer.models.build import load_tokenizer
from nlp_transfer.recipe.schema import DataConfig, TaskConfig


def _csv(tmp_path, name, rows, header=("text", "label")) -> str:
    return write_csv(tmp_path / name, rows, header)


def _splits(files: dict, seed: int = 0, **data_options):
    data = DataConfig(files=files, **data_options)
    return load_splits(data, seed), data


# ---------------------------------------------------------------- load_splits


def test_loads_the_files_of_each_split(toy_files):
    splits, _ = _splits(toy_files)
    assert {s: len(ds) for s, ds in splits.items()} == {"train": 96, "validation": 32}
    assert splits["train"].column_names == ["text", "label"]


def test_missing_file_names_the_file(tmp_path, toy_files):
    missing = str(tmp_path / "no_such_validation.csv")
    with pytest.raises(DataError, match=r"data\.files\.validation: file not found: '.*no_such_validation\.csv'"):
        _splits({"train": toy_files["train"], "validation": missing})


def test_unknown_file_format(tmp_path):
    path = tmp_path / "train.xlsx"
    path.write_text("x")
    with pytest.raises(DataError, match=r"data\.files\.train: cannot tell the format of '.*train\.xlsx'"):
        _splits({"train": str(path)})


@pytest.mark.parametrize("docstart", [True, False])
def test_a_txt_file_in_conll_layout_reads_as_conll_without_data_format(tmp_path, docstart):
    from conftest import toy_tagged_sentences, write_conll

    path = write_conll(tmp_path / "train.txt", toy_tagged_sentences(6, seed=1), docstart=docstart)
    splits = _splits({"train": path})[0]  # a validation split is held out of train
    assert sum(len(ds) for ds in splits.values()) == 6
    assert all(len(words) == len(tags) > 0 for words, tags in zip(splits["train"]["tokens"], splits["train"]["tags"]))


def test_a_txt_file_of_plain_lines_is_not_taken_for_conll(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("the food was good\nawful service\n")
    with pytest.raises(DataError, match=r"cannot tell the format of '.*train\.txt' \(suffix '\.txt'\)"):
        _splits({"train": str(path)})


@pytest.mark.parametrize("name, content", [("header_only.csv", "text,label\n"), ("zero_bytes.csv", ""),
                                           ("blank.jsonl", "\n"), ("header_only.tsv", "text\tlabel\n")])
def test_empty_split_is_an_error(tmp_path, toy_files, name, content):
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=rf"data split 'validation' \(.*{name}\) is empty; give a file with at least one row"):
        _splits({"train": toy_files["train"], "validation": str(tmp_path / name)})


def test_split_that_loads_without_rows_is_an_error(toy_files, monkeypatch):
    """The in-memory check, for sources (e.g. Hub splits) that load fine but hold no rows."""
    empty = DatasetDict({"train": Dataset.from_dict({"text": ["a"], "label": ["x"]}),
                         "validation": Dataset.from_dict({"text": [], "label": []})})
    monkeypatch.setattr(data_files, "read_split_file", lambda split, path, fmt, tag_column=-1, **_: empty[split])
    with pytest.raises(DataError, match=r"data split 'validation' \(.*validation\.csv\) is empty"):
        _splits(toy_files)


def test_limit_takes_n_rows_reproducibly(toy_files):
    first, _ = _splits(toy_files, seed=3, limit={"train": 10, "validation": 5})
    again, _ = _splits(toy_files, seed=3, limit={"train": 10, "validation": 5})
    other, _ = _splits(toy_files, seed=4, limit={"train": 10, "validation": 5})
    assert len(first["train"]) == 10 and len(first["validation"]) == 5
    assert first["train"]["text"] == again["train"]["text"]
    assert first["validation"]["text"] == again["validation"]["text"]
    assert first["train"]["text"] != other["train"]["text"]
    all_train = _splits(toy_files)[0]["train"]["text"]
    assert set(first["train"]["text"]) <= set(all_train)


def test_limit_above_the_split_size_keeps_everything(toy_files):
    splits, _ = _splits(toy_files, limit={"validation": 1000})
    assert len(splits["validation"]) == 32


def test_validation_is_carved_from_train_when_absent(tmp_path):
    rows = [(text, label, i) for i, (text, label) in enumerate(toy_sentences(40, seed=5))]
    train = _csv(tmp_path, "train.csv", rows, header=("text", "label", "row_id"))
    splits, _ = _splits({"train": train}, seed=1, validation_fraction=0.25)
    assert len(splits["validation"]) == 10 and len(splits["train"]) == 30
    train_ids, val_ids = set(splits["train"]["row_id"]), set(splits["validation"]["row_id"])
    assert not train_ids & val_ids and train_ids | val_ids == set(range(40))
    again, _ = _splits({"train": train}, seed=1, validation_fraction=0.25)
    assert again["validation"]["row_id"] == splits["validation"]["row_id"]


def test_tsv_keeps_quotes_inside_fields(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text('text\tlabel\nsay "hi" there\tpositive\n"starts with a quote\tnegative\nplain\tpositive\n',
                    encoding="utf-8")
    splits, _ = _splits({"train": str(path), "validation": str(path)})
    assert splits["train"]["text"] == ['say "hi" there', '"starts with a quote', "plain"]
    assert splits["train"]["label"] == ["positive", "negative", "positive"]


# ---------------------------------------------------------------- encode_labels


def test_missing_column_lists_the_columns_present(toy_files):
    splits, data = _splits(toy_files)
    with pytest.raises(DataError, match=r"missing column\(s\) \['sentiment'\]; columns present: \['text', 'label'\]"):
        encode_labels(splits, TaskConfig(label="sentiment"), data)
    with pytest.raises(DataError, match=r"missing column\(s\) \['body'\]; columns present: \['text', 'label'\]"):
        encode_labels(splits, TaskConfig(text="body"), data)


def test_string_labels_map_to_sorted_ids(toy_files):
    splits, data = _splits(toy_files)
    encoded, spec = encode_labels(splits, TaskConfig(), data)
    assert spec.id2label == {0: "negative", 1: "positive"}
    assert spec.label2id == {"negative": 0, "positive": 1}
    for split in ("train", "validation"):
        expected = [spec.label2id[v] for v in splits[split]["label"]]
        assert encoded[split]["labels"] == expected


def test_labels_in_validation_never_in_train(tmp_path):
    train = _csv(tmp_path, "train.csv", [("a", "pos"), ("b", "neg")])
    validation = _csv(tmp_path, "val.csv", [("c", "pos"), ("d", "meh"), ("e", "wow")])
    splits, data = _splits({"train": train, "validation": validation})
    with pytest.raises(DataError, match=r"data split 'validation' \(.*val\.csv\), column 'label': labels \['meh', 'wow'\] never occur in train; "
                                        r"train labels: \['neg', 'pos'\]"):
        encode_labels(splits, TaskConfig(), data)


def test_listing_task_labels_allows_labels_unseen_in_train(tmp_path):
    train = _csv(tmp_path, "train.csv", [("a", "pos"), ("b", "neg")])
    validation = _csv(tmp_path, "val.csv", [("c", "meh"), ("d", "pos")])
    splits, data = _splits({"train": train, "validation": validation})
    encoded, spec = encode_labels(splits, TaskConfig(labels=["neg", "meh", "pos"]), data)
    assert spec.id2label == {0: "neg", 1: "meh", 2: "pos"}
    assert encoded["validation"]["labels"] == [1, 2]


def test_single_class_train_is_an_error(tmp_path):
    train = _csv(tmp_path, "train.csv", [("a", "pos"), ("b", "pos")])
    splits, data = _splits({"train": train, "validation": train})
    with pytest.raises(DataError, match=r"found 1 distinct label\(s\) \['pos'\]; classification needs at least 2"):
        encode_labels(splits, TaskConfig(), data)


def test_int_labels_with_task_label_names(tmp_path):
    train = _csv(tmp_path, "train.csv", [("a", 0), ("b", 1), ("c", 2), ("d", 1)])
    validation = _csv(tmp_path, "val.csv", [("e", 2), ("f", 0)])
    splits, data = _splits({"train": train, "validation": validation})
    encoded, spec = encode_labels(splits, TaskConfig(labels=["neg", "neutral", "pos"]), data)
    assert spec.id2label == {0: "neg", 1: "neutral", 2: "pos"}
    assert encoded["train"]["labels"] == [0, 1, 2, 1]
    assert encoded["validation"]["labels"] == [2, 0]


def test_int_labels_without_names_are_named_by_their_values(tmp_path):
    train = _csv(tmp_path, "train.csv", [("a", 10), ("b", 2), ("c", 10)])
    splits, data = _splits({"train": train, "validation": train})
    encoded, spec = encode_labels(splits, TaskConfig(), data)
    assert spec.id2label == {0: "2", 1: "10"}  # numeric order, not string order
    assert encoded["train"]["labels"] == [1, 0, 1]


def test_int_labels_out_of_range_of_task_labels(tmp_path):
    train = _csv(tmp_path, "train.csv", [("a", 0), ("b", 1)])
    validation = _csv(tmp_path, "val.csv", [("c", 5)])
    splits, data = _splits({"train": train, "validation": validation})
    with pytest.raises(DataError, match=r"label 5 is not a class id of task\.labels \['neg', 'pos'\]: integer labels are "
                                        r"ids 0 to 1, one per name in task\.labels, in order\. The data holds 5 \(1 row\)"):
        encode_labels(splits, TaskConfig(labels=["neg", "pos"]), data)


def test_regression_labels_become_floats(tmp_path):
    train = _csv(tmp_path, "train.csv", [("a", 0.5), ("b", 3), ("c", -1.25)])
    splits, data = _splits({"train": train, "validation": train})
    encoded, spec = encode_labels(splits, TaskConfig(type="regression"), data)
    assert spec.num_labels == 1 and spec.problem_type == "regression"
    assert encoded["train"]["labels"] == [0.5, 3.0, -1.25]


def test_non_numeric_regression_label_names_row_and_value(tmp_path):
    train = _csv(tmp_path, "train.csv", [("a", 0.5), ("b", 1.0), ("c", "high"), ("d", 2.0)])
    splits, data = _splits({"train": train, "validation": train})
    with pytest.raises(DataError, match=r"data split 'train' \(.*train\.csv\), column 'label', row 2: regression labels must be numbers; got 'high'"):
        encode_labels(splits, TaskConfig(type="regression"), data)


def test_multi_label_from_a_separated_string_column(tmp_path):
    train = _csv(tmp_path, "train.csv", [("a", "sports|news"), ("b", "tech"), ("c", " news | tech "), ("d", "")])
    validation = _csv(tmp_path, "val.csv", [("e", "tech|sports")])
    splits, data = _splits({"train": train, "validation": validation})
    encoded, spec = encode_labels(splits, TaskConfig(type="multi-label-classification"), data)
    assert spec.id2label == {0: "news", 1: "sports", 2: "tech"}
    assert spec.problem_type == "multi_label_classification"
    assert encoded["train"]["labels"] == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert encoded["validation"]["labels"] == [[0.0, 1.0, 1.0]]


def test_multi_label_with_a_custom_separator_and_unknown_label(tmp_path):
    train = _csv(tmp_path, "train.csv", [("a", "x;y"), ("b", "y")])
    validation = _csv(tmp_path, "val.csv", [("c", "x;z")])
    splits, data = _splits({"train": train, "validation": validation})
    with pytest.raises(DataError, match=r"labels \['z'\] never occur in train"):
        encode_labels(splits, TaskConfig(type="multi-label-classification", label_separator=";"), data)


def test_multi_label_from_list_column_gives_multi_hot(tmp_path):
    path = tmp_path / "train.jsonl"
    rows = [{"text": "a", "label": ["red", "blue"]}, {"text": "b", "label": ["green"]}, {"text": "c", "label": []}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    splits, data = _splits({"train": str(path), "validation": str(path)})
    encoded, spec = encode_labels(splits, TaskConfig(type="multi-label-classification"), data)
    assert spec.id2label == {0: "blue", 1: "green", 2: "red"}
    assert encoded["train"]["labels"] == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]


# ---------------------------------------------------------------- tokenize_splits


def test_tokenize_adds_lengths_and_sorts_evaluation_splits(toy_files, tiny_model_dir):
    splits, data = _splits(toy_files)
    encoded, _ = encode_labels(splits, TaskConfig(), data)
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenized = tokenize_splits(encoded, tokenizer, ["text"], max_length=32)
    train = tokenized["train"]
    assert set(train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels", "length"}
    assert train["length"] == [len(ids) for ids in train["input_ids"]]
    assert train["labels"] == encoded["train"]["labels"]  # train keeps its order
    lengths = tokenized["validation"]["length"]
    assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) > 1


def test_longest_first_keeps_ties_in_order_and_warns_nothing():
    import warnings

    rows = Dataset.from_dict({"length": [3, 5, 3, 9, 5, 1], "text": list("abcdef")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Dataset.sort's pyarrow option warned of its deprecation in every run
        assert list(longest_first(rows)["text"]) == ["d", "b", "e", "a", "c", "f"]


def test_tokenize_truncates_to_max_length(tmp_path, tiny_model_dir):
    long_text = " ".join(["good"] * 100)
    train = _csv(tmp_path, "train.csv", [(long_text, "a"), ("bad", "b")])
    splits, data = _splits({"train": train, "validation": train})
    encoded, _ = encode_labels(splits, TaskConfig(), data)
    tokenized = tokenize_splits(encoded, load_tokenizer(tiny_model_dir), ["text"], max_length=16)
    assert max(tokenized["train"]["length"]) == 16


def test_sentence_pairs_get_both_segments(tmp_path, tiny_model_dir):
    rows = [("good movie", "the food was bad", "yes"), ("awful", "it was nice and happy", "no")]
    train = _csv(tmp_path, "train.csv", rows, header=("premise", "hypothesis", "label"))
    splits, data = _splits({"train": train, "validation": train})
    task = TaskConfig(text=["premise", "hypothesis"])
    encoded, _ = encode_labels(splits, task, data)
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenized = tokenize_splits(encoded, tokenizer, task.text_columns, max_length=32)
    row = tokenized["train"][0]
    tokens = tokenizer.convert_ids_to_tokens(row["input_ids"])
    assert tokens == ["[CLS]", "good", "movie", "[SEP]", "the", "food", "was", "bad", "[SEP]"]
    assert row["token_type_ids"] == [0, 0, 0, 0, 1, 1, 1, 1, 1]


def test_missing_second_text_column(tmp_path):
    train = _csv(tmp_path, "train.csv", [("a", "x"), ("b", "y")])
    splits, data = _splits({"train": train, "validation": train})
    with pytest.raises(DataError, match=r"missing column\(s\) \['hypothesis'\]; columns present: \['text', 'label'\]"):
        encode_labels(splits, TaskConfig(text=["text", "hypothesis"]), data)


# ---------------------------------------------------------------- LengthGroupedBatchSampler


def _varied_lengths(n: int = 500, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(3, 200) for _ in range(n)]


def _batches(lengths, n, batch_size=16, seed=0, epoch=0):
    sampler = LengthGroupedBatchSampler(lengths, n, batch_size, seed)
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "shuffled"])
def test_sampler_yields_every_index_once_per_epoch(grouped):
    lengths = _varied_lengths(101)
    sampler = LengthGroupedBatchSampler(lengths if grouped else None, 101, 16, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 7
        assert sorted(i for b in batches for i in b) == list(range(101))
        assert sorted(len(b) for b in batches) == [5] + [16] * 6


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped", "shuffled"])
def test_sampler_is_reproducible_and_reshuffles_per_epoch(grouped):
    lengths = _varied_lengths(200) if grouped else None
    assert _batches(lengths, 200, seed=5, epoch=2) == _batches(lengths, 200, seed=5, epoch=2)
    assert _batches(lengths, 200, seed=5, epoch=2) != _batches(lengths, 200, seed=5, epoch=3)
    assert _batches(lengths, 200, seed=5, epoch=0) != _batches(lengths, 200, seed=6, epoch=0)


def test_sampler_groups_similar_lengths():
    lengths = _varied_lengths(512)

    def mean_spread(batches):
        return statistics.mean(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches)

    grouped = mean_spread(_batches(lengths, 512, batch_size=16, seed=1))
    shuffled = mean_spread(_batches(None, 512, batch_size=16, seed=1))
    assert shuffled > 100  # random batches of lengths 3..200 span most of the range
    assert grouped < 0.2 * shuffled, (grouped, shuffled)


def test_sampler_shuffles_the_batch_order_and_puts_the_longest_batch_first():
    lengths = _varied_lengths(2000)
    batches = _batches(lengths, 2000, batch_size=16, seed=2)
    longest = [max(lengths[i] for i in b) for b in batches]
    assert longest[0] == max(lengths)
    rises = sum(b > a for a, b in zip(longest[1:], longest[2:]))
    # sorted groups cut in order would rise at nearly every step; a shuffled order rises about half the time
    assert 0.3 < rises / (len(longest) - 2) < 0.7, rises


def test_sampler_pads_little():
    lengths = _varied_lengths(2000)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in _batches(lengths, 2000, batch_size=32, seed=4))
    assert padded < 1.05 * sum(lengths)


def test_column_values_reads_a_whole_column_in_row_order_as_python_values():
    from datasets import Dataset

    from nlp_transfer.data.columns import column_values

    ds = Dataset.from_dict({"text": [f"row {i}" for i in range(50)], "length": list(range(50))})
    picked = ds.shuffle(seed=3).select(range(10, 20)).with_format("torch")  # an indices mapping and a tensor format
    values = column_values(picked, "length")
    assert values == [int(picked[i]["length"]) for i in range(len(picked))] and values != sorted(values)
    assert type(values) is list and all(type(v) is int for v in values)
    assert column_values(picked, "text") == [f"row {v}" for v in values]
