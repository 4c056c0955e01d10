"""Token classification: the CoNLL reader, tag ids, word-piece alignment, seqeval scores, outputs that pipeline() loads."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value
from transformers import AutoModelForTokenClassification, pipeline

import nlp_transfer
from nlp_transfer import RecipeError, load_recipe
from nlp_transfer.tasks.splits import encode_labels
from nlp_transfer.data.files import load_splits
from nlp_transfer.errors import DataError
from nlp_transfer.tasks.metrics import check_metric_names, compute_metrics
from nlp_transfer.models.build import load_tokenizer
from nlp_transfer.models.files import resolve_model_path
from nlp_transfer.recipe.schema import DataConfig, TaskConfig
from nlp_transfer.data.tokens import align_labels, read_conll, tokenize_and_align

from conftest import MINILM, TOY_TAGS, shared_data

REPO = Path(__file__).resolve().parents[1]

HAND_WRITTEN = """-DOCSTART- -X- -X- O

EU NNP B-ORG
rejects VBZ O
German JJ B-MISC


Peter NNP B-PER
Blackburn NNP I-PER
-DOCSTART- -X- -X- O
BRUSSELS NNP B-LOC
"""


def test_read_conll_splits_sentences_and_skips_docstart(tmp_path):
    path = tmp_path / "hand.txt"
    path.write_text(HAND_WRITTEN)
    ds = read_conll(path)
    assert ds["tokens"] == [["EU", "rejects", "German"], ["Peter", "Blackburn"], ["BRUSSELS"]]
    assert ds["tags"] == [["B-ORG", "O", "B-MISC"], ["B-PER", "I-PER"], ["B-LOC"]]
    assert ds["line"] == [3, 8, 11]  # where each sentence starts, for error messages
    assert read_conll(path, tag_column=1)["tags"][0] == ["NNP", "VBZ", "JJ"]  # the column is configurable


def test_read_conll_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("EU NNP B-ORG\nrejects VBZ O\n\nPeter\n")
    with pytest.raises(DataError, match=r"bad\.txt, line 4: expected a word and a tag in column -1 .* got 'Peter'"):
        read_conll(path)
    with pytest.raises(DataError, match=r"bad\.txt, line 1: .*column 3"):
        read_conll(path, tag_column=3)


def test_unknown_tag_in_validation_names_file_and_line(tmp_path):
    (tmp_path / "train.txt").write_text("EU B-ORG\nsaid O\n")
    (tmp_path / "val.txt").write_text("-DOCSTART- O\n\nPeter B-PER\nsaid O\n\nBonn B-LOK\n")
    data = DataConfig(files={"train": str(tmp_path / "train.txt"), "validation": str(tmp_path / "val.txt")}, format="conll")
    splits = load_splits(data, seed=0)
    task = TaskConfig(type="token-classification")
    with pytest.raises(DataError, match=r"val\.txt, line 3\): tag 'B-PER' never occurs in train"):
        encode_labels(splits, task, data)
    (tmp_path / "train.txt").write_text("EU B-ORG\nsaid O\n\nPeter B-PER\n")
    with pytest.raises(DataError, match=r"val\.txt, line 6\): tag 'B-LOK' never occurs in train; train tags: \['O', 'B-ORG', 'B-PER'\]"):
        encode_labels(load_splits(data, seed=0), task, data)


def test_tag_names_from_a_class_label_and_json_lists(tmp_path):
    names = ["O", "B-PER", "I-PER"]
    features = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))})
    hub_like = Dataset.from_dict({"tokens": [["Peter", "Blackburn", "said"]], "ner_tags": [[1, 2, 0]]}, features=features)
    task = TaskConfig(type="token-classification", tags="ner_tags")
    encoded, spec = encode_labels(DatasetDict({"train": hub_like, "validation": hub_like}), task, DataConfig(source="x"))
    assert spec.id2label == dict(enumerate(names)) and encoded["validation"]["labels"] == [[1, 2, 0]]
    rows = [{"words": ["Ann", "met", "Bob"], "tags": ["B-PER", "O", "B-PER"]}]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    data = DataConfig(files={"train": str(tmp_path / "t.jsonl"), "validation": str(tmp_path / "t.jsonl")})
    encoded, spec = encode_labels(load_splits(data, 0), TaskConfig(type="token-classification", tokens="words"), data)
    assert spec.label_names == ["O", "B-PER"] and encoded["train"]["labels"] == [[1, 0, 1]]


def test_align_labels_first_sub_token_or_all():
    word_ids = [None, 0, 1, 1, 1, 2, None]  # [CLS] Peter Black ##bur ##n said [SEP]
    assert align_labels(word_ids, [1, 2, 0]) == [-100, 1, 2, -100, -100, 0, -100]
    assert align_labels(word_ids, [1, 2, 0], label_all_subtokens=True) == [-100, 1, 2, 2, 2, 0, -100]


@pytest.fixture(scope="module")
def minilm_tokenizer():
    return load_tokenizer(resolve_model_path(MINILM))


@pytest.mark.parametrize("all_pieces", [False, True], ids=["first-sub-token", "all-sub-tokens"])
def test_tokenize_and_align_with_a_real_word_piece_tokenizer(minilm_tokenizer, all_pieces):
    words, tags = ["Lenzerheide", "is", "in", "Switzerland"], [5, 0, 0, 5]
    pieces = minilm_tokenizer.tokenize("Lenzerheide")
    assert len(pieces) > 1  # the word really splits
    splits = DatasetDict({"train": Dataset.from_dict({"tokens": [words], "labels": [tags]})})
    task = TaskConfig(type="token-classification", label_all_subtokens=all_pieces)
    tokenized, report = tokenize_and_align(splits, minilm_tokenizer, task, max_length=32)
    labels = tokenized["train"][0]["labels"]
    first = [5] + [5 if all_pieces else -100] * (len(pieces) - 1)
    assert labels == [-100, *first, 0, 0, *([5] * len(minilm_tokenizer.tokenize("Switzerland"))), -100]
    assert report["train"] == {"sentences": 1, "sentences_truncated": 0, "words_cut": 0, "max_length": 32}


def test_truncation_is_counted_and_logged(minilm_tokenizer, caplog):
    rows = {"tokens": [["a"] * 20, ["b"] * 3], "labels": [[0] * 20, [0] * 3]}
    splits = DatasetDict({"train": Dataset.from_dict(rows)})
    with caplog.at_level(logging.WARNING, logger="nlp_transfer.data.tokens"):
        tokenized, report = tokenize_and_align(splits, minilm_tokenizer, TaskConfig(type="token-classification"), max_length=12)
    # [CLS] + 10 words + [SEP]: 10 of the 20 words are cut
    assert report["train"] == {"sentences": 2, "sentences_truncated": 1, "words_cut": 10, "max_length": 12}
    assert "1 of 2 sentences are longer than model.max_length=12 word pieces; 10 words were cut" in caplog.text
    assert tokenized["train"]["length"] == [12, 5]


def test_seqeval_scores_entities_like_conll():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    # gold: [PER(Peter Blackburn)] O [LOC(Bonn)] | O O [LOC(New York)]; -100: special tokens and later pieces
    refs = np.array([[-100, 1, 2, 0, 3, -100], [-100, 0, 0, 3, 4, -100]])
    preds = np.array([[0, 1, 2, 0, 0, 4], [1, 0, 0, 3, 4, 0]])  # misses Bonn; predictions at -100 positions do not count
    scores = compute_metrics(["f1", "precision", "recall", "accuracy"], "token-classification", preds, refs, 5, label_names=names)
    # 2 of 2 predicted entities right, 2 of 3 gold entities found; 7 of 8 tagged words right
    assert scores == pytest.approx({"f1": 0.8, "precision": 1.0, "recall": 2 / 3, "accuracy": 7 / 8,
                                    "precision_LOC": 1.0, "recall_LOC": 0.5, "f1_LOC": 2 / 3,
                                    "precision_PER": 1.0, "recall_PER": 1.0, "f1_PER": 1.0})
    # a wrong boundary is a wrong entity (exact span match), and the all-O tagger scores 0 F1
    partial = np.array([[0, 1, 0, 0, 3, 0], [0, 0, 0, 3, 4, 0]])
    assert compute_metrics(["f1"], "token-classification", partial, refs, 5, label_names=names)["f1"] == pytest.approx(2 / 3)
    assert compute_metrics(["f1"], "token-classification", np.zeros_like(refs), refs, 5, label_names=names)["f1"] == 0.0


def test_token_metric_names_are_checked():
    assert check_metric_names(["f1", "precision", "recall", "accuracy"], "token-classification") == []
    problems = check_metric_names(["f1_macro", "matthews_correlation"], "token-classification")
    assert len(problems) == 2 and "use one of: f1, precision, recall, accuracy" in problems[0]


def test_recipe_validation_for_token_tasks(toy_token_recipe):
    bad = {**toy_token_recipe, "task": {"type": "text-classification"}, "strategy": {"name": "frozen"},
           "data": {**toy_token_recipe["data"], "tag_column": 0}}
    with pytest.raises(RecipeError) as info:
        load_recipe(bad, ["task.label_all_subtokens=true"])
    text = str(info.value)
    assert "data.format: got 'conll', which only task.type token-classification reads" in text
    assert "data.tag_column: got 0, which only task.type token-classification reads" in text
    assert "task.label_all_subtokens: got True, which only task.type token-classification reads" in text
    with pytest.raises(RecipeError, match=r"data.tag_column: got 0, which is the word column"):
        load_recipe({**toy_token_recipe, "data": {**toy_token_recipe["data"], "tag_column": 0}})
    with pytest.raises(RecipeError, match=r"model.pooling: got 'mean', but a token-classification head reads every token's"):
        load_recipe({**toy_token_recipe, "model": {**toy_token_recipe["model"], "pooling": "mean"}, "strategy": {"name": "frozen"}})


@pytest.mark.integration  # reads the real CoNLL-2003 files (NLP_TRANSFER_TEST_DATA)
def test_conll2003_recipes_take_the_local_files_override():
    conll = shared_data("conll2003")
    for name in ("full", "lora"):
        recipe = load_recipe(REPO / "recipes" / "conll2003" / f"{name}.yaml", [
            "data.source=null", "data.format=conll", f"data.files.train={conll / 'train.txt'}",
            f"data.files.validation={conll / 'validation.txt'}", f"data.files.test={conll / 'test.txt'}"])
        assert recipe.task.type == "token-classification" and recipe.data.format == "conll"
        assert recipe.task.labels == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]


def test_trained_tagger_loads_with_pipeline_and_predict(toy_token_recipe, tmp_path):
    recipe = {**toy_token_recipe, "train": {**toy_token_recipe["train"], "epochs": 15, "lr": 5e-3, "head_lr": 5e-2}}
    out = nlp_transfer.train(recipe)
    metrics = out.metrics
    assert metrics["truncation"]["validation"] == {"sentences": 32, "sentences_truncated": 0, "words_cut": 0, "max_length": 32}
    assert {"f1", "accuracy", "f1_POS", "f1_NEG"} <= set(metrics["validation"])
    # the all-O tagger scores 0; one that tags each opinion word right but never continues a span (I-) scores 0.4
    assert metrics["validation"]["f1"] >= 0.75, metrics["validation"]
    model = AutoModelForTokenClassification.from_pretrained(out.output_dir)
    assert [model.config.id2label[i] for i in range(5)] == TOY_TAGS
    tagger = pipeline("token-classification", model=str(out.output_dir), aggregation_strategy="simple")
    found = tagger("the food was excellent and the service was awful")
    assert {(e["word"], e["entity_group"]) for e in found} == {("excellent", "POS"), ("awful", "NEG")}
    ours = nlp_transfer.predict(out.output_dir, ["the food was excellent and the service was awful"])
    assert [(e["word"], e["entity_group"]) for e in ours[0]["entities"]] == [(e["word"], e["entity_group"]) for e in found]
    card = (out.output_dir / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card
    assert nlp_transfer.evaluate(out.output_dir)["f1"] == pytest.approx(metrics["validation"]["f1"])


@pytest.mark.integration
def test_minilm_learns_conll2003_entities(tmp_path):
    """Real MiniLM, 600 real CoNLL-2003 sentences, 2 epochs: entity F1 far above the all-O tagger's 0."""
    conll = shared_data("conll2003")
    out = nlp_transfer.train({
        "model": {"name": MINILM, "max_length": 64},
        "task": {"type": "token-classification"},
        "data": {"files": {"train": str(conll / "train.txt"), "validation": str(conll / "validation.txt")}, "format": "conll",
                 "limit": {"train": 600, "validation": 200}},
        "strategy": {"name": "full"},
        "train": {"epochs": 2, "batch_size": 16, "lr": 3e-4, "warmup_ratio": 0.1, "seed": 13},
        "output": {"dir": str(tmp_path / "conll-full")},
    })
    scores = out.metrics["validation"]
    assert scores["f1"] > 0.5, scores  # the trivial all-O tagger scores 0 entity F1 (token accuracy ~0.83)
    assert scores["f1_PER"] > 0.6 and scores["accuracy"] > 0.9
    tagger = pipeline("token-classification", model=str(out.output_dir), aggregation_strategy="simple")
    found = {(e["word"], e["entity_group"]) for e in tagger("Angela Merkel met Emmanuel Macron in Paris.")}
    assert {("angela merkel", "PER"), ("paris", "LOC")} <= found, found  # the uncased tokenizer lowercases words


def test_token_distillation_loss_counts_only_tagged_positions():
    import torch

    from nlp_transfer.strategies.distill.losses import distillation_loss

    teacher = torch.randn(2, 5, 3)
    labels = torch.tensor([[-100, 0, 2, -100, -100], [-100, 1, -100, -100, -100]])
    student = teacher.clone()
    student[labels == -100] += 100.0  # ignored positions (special tokens, later pieces, padding) may say anything
    labeled = torch.tensor([True, True])
    _, parts = distillation_loss(student, teacher, labels, labeled, "token-classification", temperature=2.0, alpha=0.5)
    assert parts["loss_soft"].item() == pytest.approx(0.0, abs=1e-6)
    tagged = labels != -100
    expected_hard = torch.nn.functional.cross_entropy(teacher[tagged], labels[tagged])
    assert parts["loss_hard"].item() == pytest.approx(expected_hard.item(), rel=1e-5)
    student[0, 1] += torch.tensor([0.0, 5.0, 0.0])  # a tagged position that differs does count
    _, parts = distillation_loss(student, teacher, labels, labeled, "token-classification")
    assert parts["loss_soft"].item() > 0.01
