"""Cross-tokenizer distillation: a BERT teacher (word-level vocab) teaches an MPNet student (other ids,
other special tokens, some words split into pieces); each side tokenizes the raw text its own way."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, MPNetTokenizer, pipeline

import nlp_transfer
from nlp_transfer import ModelError, RecipeError, load_recipe
from nlp_transfer.models.build import load_tokenizer
from nlp_transfer.strategies.distill.strategy import DistillStrategy
from nlp_transfer.strategies.distill.losses import distillation_loss
from nlp_transfer.strategies.distill.cross_tokenizer import TeacherText
from nlp_transfer.tasks.spec import WORD_IDS
from nlp_transfer.tasks import get_task_type

from conftest import MPNET_VOCAB
from test_distill import distill_recipe, teacher_calls, trained_teacher  # noqa: F401 (fixtures)

WORDS = ["the", "superb", "movie", "boring"]


def _mpnet_tokenizer():
    return MPNetTokenizer(vocab={w: i for i, w in enumerate(MPNET_VOCAB)})


def test_per_token_targets_follow_the_words_to_the_students_pieces(tiny_model_dir):
    student = _mpnet_tokenizer()  # <s> the super ##b movie bor ##ing </s>
    text = TeacherText(load_tokenizer(tiny_model_dir), get_task_type("token-classification"), ["tokens"],
                       max_length=4)  # [CLS] the superb [SEP]
    encoded = student(WORDS, is_split_into_words=True)
    rows = Dataset.from_dict({"tokens": [WORDS], "input_ids": [encoded["input_ids"]]})
    teacher_inputs = text.inputs(rows)
    assert teacher_inputs[0][WORD_IDS] == [-1, 0, 1, -1]
    teacher_logits = [np.array([[10.0, 0.0], [1.0, 2.0], [3.0, 4.0], [20.0, 0.0]], dtype=np.float32)]  # per teacher position
    (aligned,) = text.align(teacher_logits, teacher_inputs, rows, student)
    nan = [np.nan, np.nan]
    # special tokens: none; "superb": both pieces get the word's target; "movie", "boring": cut by the teacher
    np.testing.assert_array_equal(aligned, np.array([nan, [1, 2], [3, 4], [3, 4], nan, nan, nan, nan], dtype=np.float32))


def test_words_without_a_teacher_target_add_only_the_label_loss():
    student = torch.tensor([[[1.0, 0.0], [0.5, 0.5], [0.0, 2.0]]])
    teacher = torch.tensor([[[2.0, 0.0], [float("nan"), float("nan")], [0.0, 1.0]]])
    labels = torch.tensor([[0, 1, 1]])
    loss, parts = distillation_loss(student, teacher, labels, torch.tensor([True]), "token-classification", temperature=1.0, alpha=0.5)
    keep = torch.tensor([0, 2])
    _, expected = distillation_loss(student[:, keep], teacher[:, keep], labels[:, keep], torch.tensor([True]),
                                    "token-classification", temperature=1.0, alpha=0.5)
    assert torch.isfinite(loss)
    assert parts["loss_soft"].item() == pytest.approx(expected["loss_soft"].item(), rel=1e-6)
    assert parts["loss_hard"].item() == pytest.approx(torch.nn.functional.cross_entropy(student[0], labels[0]).item(), rel=1e-6)


def test_a_student_with_another_tokenizer_learns_from_the_teacher_run_once(toy_recipe, trained_teacher, tiny_mpnet_dir,  # noqa: F811
                                                                          tmp_path, teacher_calls):  # noqa: F811
    recipe = distill_recipe({**toy_recipe, "model": {"name": tiny_mpnet_dir, "max_length": 32}}, trained_teacher,
                            str(tmp_path / "student"), speed_rows=32)
    recipe["train"].update(epochs=6, head_lr=3e-3)  # the toy lr is high already: not 10x on the fresh student's head
    seen = []
    original = DistillStrategy.loss

    def spy(self, model, batch, ctx):  # the loss reads cached targets only: the teacher is not called from here on
        seen.append(len(teacher_calls))
        return original(self, model, batch, ctx)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DistillStrategy, "loss", spy)
        out = nlp_transfer.train(recipe)
    stats = out.metrics["distill"]
    # one pass over validation (32 rows) and train (96) in teacher batches of 64, then 4 timed speed passes of 32 rows
    assert teacher_calls[:3] == [32, 64, 32] and len(teacher_calls) == 3 + 4
    assert set(seen) == {3} and len(seen) == out.metrics["train"]["steps"]
    assert stats["tokenizers"] == {"teacher": "BertTokenizer", "teacher_max_length": 32}
    # read through its own tokenizer, the teacher scores exactly what it scored when it was trained
    assert stats["teacher_score"] == json.loads((Path(trained_teacher) / "metrics.json").read_text())["validation"]["accuracy"]
    assert out.metrics["validation"]["accuracy"] >= 0.9 and stats["retention"] >= 0.9
    assert stats["speed"]["rows"] == 32 and stats["speed"]["teacher_seconds"] > 0
    model = AutoModelForSequenceClassification.from_pretrained(out.output_dir)
    assert type(model).__name__ == "MPNetForSequenceClassification"
    classifier = pipeline("text-classification", model=str(out.output_dir))
    assert classifier("the food was really superb")[0]["label"] == "positive"  # "superb": two pieces for this student
    assert classifier("an awful and boring movie")[0]["label"] == "negative"

    teacher_calls.clear()
    again = nlp_transfer.train({**recipe, "strategy": {**recipe["strategy"], "speed_rows": 0},
                                "train": {**recipe["train"], "epochs": 1}, "output": {"dir": str(tmp_path / "again")}})
    assert teacher_calls == []  # a later run reads the cached teacher outputs
    assert again.metrics["distill"]["teacher_cache"]["hits"] == {"validation": True, "train": True}


def test_token_classification_across_tokenizers(toy_token_recipe, tiny_token_teacher_dir, tiny_mpnet_dir, tmp_path):
    recipe = distill_recipe({**toy_token_recipe, "model": {"name": tiny_mpnet_dir, "max_length": 32}}, tiny_token_teacher_dir,
                            str(tmp_path / "tagger"), hidden_weight=0.5)  # first-token states: sequence-level, no alignment
    recipe["train"].update(epochs=2)
    targets = []
    original = DistillStrategy.loss

    def spy(self, model, batch, ctx):
        targets.append((batch["labels"].clone(), batch["teacher_logits"].clone()))
        return original(self, model, batch, ctx)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DistillStrategy, "loss", spy)
        out = nlp_transfer.train(recipe)
    for labels, teacher in targets:  # every tagged piece has a finite target (no word was cut); special tokens have none
        tagged = labels != -100
        assert torch.isfinite(teacher[:, :labels.shape[1]][tagged]).all()
        assert torch.isnan(teacher[:, 0]).all()  # <s>
    assert out.metrics["distill"]["tokenizers"]["teacher"] == "BertTokenizer"
    assert out.metrics["reload_check"]["passed"]
    log = [json.loads(line) for line in (out.output_dir / "train_log.jsonl").read_text().splitlines()]
    soft = [(r["loss_soft"], r["loss_hidden"]) for r in log if "loss_soft" in r]
    assert soft and all(np.isfinite(v) and v > 0 for pair in soft for v in pair)


def test_teacher_max_length_must_be_positive(toy_recipe, tiny_teacher_dir):
    with pytest.raises(RecipeError, match=r"strategy.teacher_max_length: got 0; expected a positive number of tokens"):
        load_recipe(distill_recipe(toy_recipe, tiny_teacher_dir, teacher_max_length=0))


def test_running_the_teacher_every_step_needs_a_shared_tokenizer(toy_recipe, tiny_teacher_dir, tiny_mpnet_dir, tmp_path):
    recipe = distill_recipe({**toy_recipe, "model": {"name": tiny_mpnet_dir, "max_length": 32}}, tiny_teacher_dir,
                            str(tmp_path / "x"), cache_teacher=False)
    with pytest.raises(ModelError, match=r"strategy.cache_teacher: false runs the teacher on the student's token ids .* "
                                         r"set strategy.cache_teacher=true"):
        nlp_transfer.train(recipe)
    assert not (tmp_path / "x").exists()
