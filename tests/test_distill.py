"""distill: teacher -> student in the one loop; losses by hand, layer copies bit for bit, the teacher cache."""

import json
import math
import time

import pytest
import torch
from transformers import (AlbertConfig, AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification,
                          BertTokenizerFast, ElectraConfig, RobertaConfig, pipeline)

import nlp_transfer
from nlp_transfer import ModelError, RecipeError, load_recipe
from nlp_transfer.strategies.registry import STRATEGIES
from nlp_transfer.strategies.distill import models as distill_models
from nlp_transfer.strategies.distill.strategy import DistillStrategy
from nlp_transfer.strategies.distill.losses import distillation_loss, hidden_loss
from nlp_transfer.models.build import load_tokenizer
from nlp_transfer.strategies.distill.models import (build_student, check_same_tokenizer, encoder_layers_path, evenly_spaced, hidden_layer_map, load_teacher)

from conftest import MINILM, VOCAB, shared_data, toy_sentences, write_csv

T, ALPHA = 2.0, 0.3
STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 1.0]]
TEACHER = [[2.0, 1.0, 0.0], [0.5, 0.5, -0.5]]


def _softmax(row, temperature=1.0):
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


def _kl(p, q):
    return sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))


def _ce(row, label):
    return -math.log(_softmax(row)[label])


def _tensors(labels, labeled):
    return torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(labels), torch.tensor(labeled)


# ---------------------------------------------------------------- losses by hand

def test_classification_loss_is_alpha_ce_plus_t2_kl():
    s, t, y, m = _tensors([1, 2], [True, True])
    loss, parts = distillation_loss(s, t, y, m, "text-classification", temperature=T, alpha=ALPHA)
    kl = [_kl(_softmax(tr, T), _softmax(sr, T)) for sr, tr in zip(STUDENT, TEACHER)]
    ce = [_ce(STUDENT[0], 1), _ce(STUDENT[1], 2)]
    assert parts["loss_soft"].item() == pytest.approx(T * T * sum(kl) / 2, rel=1e-5)
    assert parts["loss_hard"].item() == pytest.approx(sum(ce) / 2, rel=1e-5)
    assert loss.item() == pytest.approx(ALPHA * sum(ce) / 2 + (1 - ALPHA) * T * T * sum(kl) / 2, rel=1e-5)


def test_unlabeled_rows_contribute_only_the_soft_loss():
    s, t, _, m = _tensors([1, -100], [True, False])
    s.requires_grad_(True)
    loss, parts = distillation_loss(s, t, torch.tensor([1, -100]), m, "text-classification", temperature=T, alpha=ALPHA)
    kl = [_kl(_softmax(tr, T), _softmax(sr, T)) for sr, tr in zip(STUDENT, TEACHER)]
    # hard part averaged over the one labelled row; soft part over both rows
    assert loss.item() == pytest.approx(ALPHA * _ce(STUDENT[0], 1) + (1 - ALPHA) * T * T * sum(kl) / 2, rel=1e-5)
    loss.backward()
    # the unlabelled row's gradient is exactly that of the soft term: (1 - alpha) * T^2 / B * (p_s - p_t) / T
    expected = [(1 - ALPHA) * T * T / 2 * (ps - pt) / T for ps, pt in zip(_softmax(STUDENT[1], T), _softmax(TEACHER[1], T))]
    assert s.grad[1].tolist() == pytest.approx(expected, rel=1e-5)
    # whatever an unlabelled row's label says, the loss does not change
    other, _ = distillation_loss(s.detach(), t, torch.tensor([1, 0]), m, "text-classification", temperature=T, alpha=ALPHA)
    assert other.item() == pytest.approx(loss.item(), rel=1e-6)
    # a batch of only unlabelled rows is all soft
    only, parts = distillation_loss(s.detach(), t, torch.tensor([-100, -100]), torch.tensor([False, False]),
                                    "text-classification", temperature=T, alpha=ALPHA)
    assert parts["loss_hard"].item() == 0.0
    assert only.item() == pytest.approx((1 - ALPHA) * T * T * sum(kl) / 2, rel=1e-5)


def test_multi_label_loss_is_bernoulli_kl_per_label():
    s, t = torch.tensor(STUDENT), torch.tensor(TEACHER)
    y = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    loss, parts = distillation_loss(s, t, y, torch.tensor([True, False]), "multi-label-classification", temperature=T, alpha=ALPHA)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    kl = [pt * math.log(pt / ps) + (1 - pt) * math.log((1 - pt) / (1 - ps))
          for srow, trow in zip(STUDENT, TEACHER) for ps, pt in ((sig(a / T), sig(b / T)) for a, b in zip(srow, trow))]
    bce = [-(yi * math.log(sig(v)) + (1 - yi) * math.log(1 - sig(v))) for v, yi in zip(STUDENT[0], [0.0, 1.0, 1.0])]
    assert parts["loss_soft"].item() == pytest.approx(T * T * sum(kl) / 6, rel=1e-5)
    assert parts["loss_hard"].item() == pytest.approx(sum(bce) / 3, rel=1e-5)
    assert loss.item() == pytest.approx(ALPHA * sum(bce) / 3 + (1 - ALPHA) * T * T * sum(kl) / 6, rel=1e-5)
    same, _ = distillation_loss(t, t, y, torch.tensor([False, False]), "multi-label-classification", temperature=T, alpha=0.0)
    assert same.item() == pytest.approx(0.0, abs=1e-6)  # zero at a perfect match, unlike plain soft-target BCE


def test_regression_loss_mixes_mse_to_teacher_and_labels():
    s, t = torch.tensor([[1.0], [2.0], [0.0]]), torch.tensor([[1.5], [1.0], [-1.0]])
    y = torch.tensor([2.0, -100.0, 0.5])
    loss, parts = distillation_loss(s, t, y, torch.tensor([True, False, True]), "regression", temperature=T, alpha=ALPHA)
    soft = (0.5 ** 2 + 1.0 ** 2 + 1.0 ** 2) / 3
    hard = (1.0 ** 2 + 0.5 ** 2) / 2
    assert (parts["loss_soft"].item(), parts["loss_hard"].item()) == pytest.approx((soft, hard), rel=1e-6)
    assert loss.item() == pytest.approx(ALPHA * hard + (1 - ALPHA) * soft, rel=1e-6)


def test_hidden_loss_is_mse_of_the_states():
    a, b = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]]]), torch.tensor([[[0.0, 2.0]], [[1.0, 1.0]]])
    assert hidden_loss(a, b).item() == pytest.approx((1 + 0 + 1 + 1) / 4)


# ---------------------------------------------------------------- the student

def _config(cls, **extra):
    return cls(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=64, num_labels=2, **extra)


@pytest.mark.parametrize("config", [_config(BertConfig), _config(RobertaConfig, pad_token_id=0),
                                    _config(ElectraConfig, embedding_size=16)], ids=["bert", "roberta", "electra"])
def test_layer_copy_student_equals_the_teachers_chosen_layers_bit_for_bit(config):
    torch.manual_seed(0)
    teacher = AutoModelForSequenceClassification.from_config(config).eval()
    student = build_student(teacher, [0, 2, 3])
    prefix = encoder_layers_path(teacher) + "."
    assert prefix == f"{teacher.base_model_prefix}.encoder.layer."
    assert student.config.num_hidden_layers == 3 and teacher.config.num_hidden_layers == 4
    teacher_weights, student_weights = teacher.state_dict(), student.state_dict()
    expected = {k for k in teacher_weights if not k.startswith(prefix) or k[len(prefix):].split(".")[0] != "1"}
    assert len(student_weights) == len(expected)
    for name, tensor in student_weights.items():
        source = name
        if name.startswith(prefix):
            index, rest = name[len(prefix):].split(".", 1)
            source = f"{prefix}{[0, 2, 3][int(index)]}.{rest}"
        assert torch.equal(tensor, teacher_weights[source]), name
    ids = torch.tensor([[2, 5, 8, 3]])
    with torch.inference_mode():
        assert student(input_ids=ids).logits.shape == (1, 2)


def test_unknown_layouts_and_bad_layer_choices_fail_clearly():
    albert = AutoModelForSequenceClassification.from_config(
        AlbertConfig(vocab_size=40, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64))
    with pytest.raises(ModelError, match=r"cannot find the encoder layers of AlbertForSequenceClassification .*albert.encoder.layer"):
        build_student(albert, [0])
    teacher = AutoModelForSequenceClassification.from_config(_config(BertConfig))
    with pytest.raises(ModelError, match=r"got \[0, 4\], but the teacher has 4 layers \(0 to 3\)"):
        build_student(teacher, [0, 4])
    with pytest.raises(ModelError, match=r"got 5, but the teacher has only 4 layers"):
        evenly_spaced(4, 5)


def test_layer_choices_and_maps():
    assert evenly_spaced(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's choice
    assert evenly_spaced(6, 3) == [0, 3, 5]
    assert evenly_spaced(4, 1) == [3]
    assert hidden_layer_map(3, 6, copied=[0, 3, 5]) == [0, 3, 5]
    assert hidden_layer_map(3, 6) == [1, 3, 5]  # student layer j mimics teacher layer (j+1)*T/S - 1
    assert hidden_layer_map(2, 4, explicit=[0, 1]) == [0, 1]
    with pytest.raises(ModelError, match=r"strategy.hidden_layers: got \[0\]; expected 2 teacher layer indices"):
        hidden_layer_map(2, 4, explicit=[0])


def test_strategy_builds_the_student_from_the_teacher_folder(tiny_teacher_dir, toy_recipe):
    recipe = load_recipe(distill_recipe(toy_recipe, tiny_teacher_dir, student_layers=[1, 3]))
    assert recipe.model.name == tiny_teacher_dir  # model.name left out: the student comes from the teacher
    strategy = STRATEGIES["distill"](recipe.strategy, _binary())
    student = strategy.build_model(lambda: pytest.fail("the default builder must not run"))
    weights = BertForSequenceClassification.from_pretrained(tiny_teacher_dir).state_dict()
    moved = {"bert.encoder.layer.0.": "bert.encoder.layer.1.", "bert.encoder.layer.1.": "bert.encoder.layer.3."}
    copied = student.state_dict()
    assert student.config.num_hidden_layers == 2 and len(copied) == len(weights) - len(
        [k for k in weights if k.startswith(("bert.encoder.layer.0.", "bert.encoder.layer.2."))])
    for name, tensor in copied.items():
        prefix = next((p for p in moved if name.startswith(p)), None)
        source = moved[prefix] + name[len(prefix):] if prefix else name
        assert torch.equal(tensor, weights[source]), name
    assert student.config.id2label == {0: "negative", 1: "positive"}


# ---------------------------------------------------------------- runs

def _binary():
    from nlp_transfer.tasks.spec import TaskSpec

    return TaskSpec("text-classification", {0: "negative", 1: "positive"})


def distill_recipe(toy_recipe: dict, teacher: str, out: str | None = None, **strategy) -> dict:
    """The toy recipe under distill; with student layers the student comes from the teacher (model.name left out)."""
    copies = "student_layers" in strategy or "student_num_layers" in strategy
    model = {"max_length": 32} if copies else toy_recipe["model"]
    recipe = {**toy_recipe, "model": model, "strategy": {"name": "distill", "teacher": teacher, "speed_rows": 0, **strategy},
              "train": {**toy_recipe["train"], "epochs": 3}}
    if out:
        recipe["output"] = {"dir": out}
    return recipe


@pytest.fixture
def teacher_calls(monkeypatch):
    """Every forward call of every teacher the distill strategy loads."""
    calls = []
    original = distill_models.load_model

    def counting(folder, *args, **kwargs):
        model = original(folder, *args, **kwargs)
        model.register_forward_pre_hook(lambda module, args, kwargs: calls.append(len(kwargs["input_ids"])), with_kwargs=True)
        return model

    monkeypatch.setattr(distill_models, "load_model", counting)
    return calls


@pytest.fixture(scope="module")
def trained_teacher(tmp_path_factory, tiny_teacher_dir) -> str:
    """The tiny 4-layer teacher fine-tuned (strategy full) on the toy sentiment data."""
    folder = tmp_path_factory.mktemp("teacher-run")
    files = {"train": write_csv(folder / "train.csv", toy_sentences(96, seed=1)),
             "validation": write_csv(folder / "validation.csv", toy_sentences(32, seed=2))}
    recipe = {"model": {"name": tiny_teacher_dir, "max_length": 32}, "task": {"type": "text-classification"},
              "data": {"files": files}, "strategy": {"name": "full"},
              "train": {"epochs": 10, "batch_size": 16, "lr": 3e-3, "seed": 7, "warmup_ratio": 0.0},
              "output": {"dir": str(folder / "teacher")}}
    out = nlp_transfer.train(recipe)
    assert out.metrics["validation"]["accuracy"] >= 0.9
    return str(out.output_dir)


def test_teacher_runs_once_then_comes_from_the_cache(toy_recipe, tiny_teacher_dir, tmp_path, teacher_calls):
    first = nlp_transfer.train(distill_recipe(toy_recipe, tiny_teacher_dir, str(tmp_path / "first"), student_num_layers=2))
    # 96 train + 32 validation rows in teacher batches of 64: 3 forward calls for 3 epochs, not 3 per epoch
    assert len(teacher_calls) == 3 and sum(teacher_calls) == 128
    stats = first.metrics["distill"]
    assert stats["teacher_cache"]["hits"] == {"train": False, "validation": False}
    assert first.metrics["train"]["epochs_completed"] == 3
    teacher_calls.clear()
    second = nlp_transfer.train(distill_recipe(toy_recipe, tiny_teacher_dir, str(tmp_path / "second"), student_num_layers=2))
    assert teacher_calls == []  # a later run never runs the teacher again
    saved = json.loads((second.output_dir / "metrics.json").read_text())["distill"]
    assert saved["teacher_cache"]["hits"] == {"train": True, "validation": True}
    assert saved["teacher_validation"] == pytest.approx(stats["teacher_validation"])
    assert second.metrics["validation"] == pytest.approx(first.metrics["validation"])


def test_without_the_cache_the_teacher_runs_every_step(toy_recipe, tiny_teacher_dir, tmp_path, teacher_calls):
    out = nlp_transfer.train(distill_recipe(toy_recipe, tiny_teacher_dir, str(tmp_path / "a"), student_num_layers=2,
                                            cache_teacher=False))
    steps = out.metrics["train"]["steps"]
    assert steps == 3 * 6
    assert len(teacher_calls) == 1 + steps  # the validation pass once (for the teacher's score), then every step
    cache = out.metrics["distill"]["teacher_cache"]
    assert cache["enabled"] is False and cache["hits"] == {"validation": False, "train": False}
    assert cache["teacher_seconds"] > 0  # the one cached-free teacher pass that is timed: validation, for its score
    assert not any((tmp_path / "nlp_transfer_cache").rglob("dataset_info.json"))


def test_distilled_student_learns_saves_and_loads_with_plain_transformers(toy_recipe, trained_teacher, tmp_path):
    recipe = distill_recipe(toy_recipe, trained_teacher, str(tmp_path / "student"), student_num_layers=2, speed_rows=32)
    recipe["train"].update(epochs=6)
    out = nlp_transfer.train(recipe)
    stats = out.metrics["distill"]
    assert out.metrics["validation"]["accuracy"] >= 0.9
    assert stats["teacher_score"] >= 0.9 and stats["retention"] >= 0.9
    assert stats["student_layers"] == [0, 3]
    assert stats["parameters"]["compression_ratio"] > 1.3
    assert stats["parameters"]["student"] == out.metrics["parameters"]["total"]
    speed = stats["speed"]
    assert speed["rows"] == 32 and speed["repeats"] == 3 and speed["teacher_seconds"] > 0 and speed["student_seconds"] > 0
    assert speed["speedup"] == pytest.approx(speed["teacher_seconds"] / speed["student_seconds"], rel=1e-2)
    model = AutoModelForSequenceClassification.from_pretrained(out.output_dir)
    assert type(model).__name__ == "BertForSequenceClassification" and model.config.num_hidden_layers == 2
    assert model.config.id2label == {0: "negative", 1: "positive"}
    classifier = pipeline("text-classification", model=str(out.output_dir))
    assert classifier("the food was really excellent")[0]["label"] == "positive"
    assert classifier("an awful and boring movie")[0]["label"] == "negative"


def test_unlabeled_text_trains_on_soft_targets(toy_recipe, tiny_teacher_dir, tmp_path, teacher_calls):
    unlabeled = write_csv(tmp_path / "unlabeled.csv", [(text,) for text, _ in toy_sentences(40, seed=9)], header=("text",))
    recipe = distill_recipe(toy_recipe, tiny_teacher_dir, str(tmp_path / "u"), student_num_layers=1)
    recipe["data"] = {**recipe["data"], "files": {**recipe["data"]["files"], "unlabeled": unlabeled}}
    seen = []
    original = DistillStrategy.loss

    def spy(self, model, batch, ctx):
        seen.append((batch["labels"].clone(), batch["labeled"].clone()))
        return original(self, model, batch, ctx)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DistillStrategy, "loss", spy)
        out = nlp_transfer.train(recipe)
    assert out.metrics["data"]["train"] == 96 + 40
    assert out.metrics["distill"]["rows"] == {"labeled": 96, "unlabeled": 40}
    assert out.metrics["distill"]["teacher_cache"]["hits"] == {"validation": False, "train": False, "unlabeled": False}
    labels, labeled = torch.cat([s[0] for s in seen]), torch.cat([s[1] for s in seen])
    assert int((~labeled).sum()) == 3 * 40 and bool((labels[~labeled] == -100).all()) and bool((labels[labeled] >= 0).all())
    assert sum(teacher_calls) == 96 + 32 + 40


def test_hidden_state_loss_projects_a_narrower_student(toy_recipe, tiny_teacher_dir, tmp_path):
    narrow = tmp_path / "narrow"
    BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True).save_pretrained(narrow)
    torch.manual_seed(0)
    BertForSequenceClassification(BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                             intermediate_size=32, max_position_embeddings=64)).bert.save_pretrained(narrow)
    recipe = distill_recipe({**toy_recipe, "model": {"name": str(narrow), "max_length": 32}}, tiny_teacher_dir,
                            str(tmp_path / "h"), hidden_weight=1.0)
    out = nlp_transfer.train(recipe)
    assert out.metrics["distill"]["hidden_layers"] == [1, 3]
    # the two 16 -> 32 projections train beside the student but are not exported
    assert out.metrics["parameters"]["trainable"] == out.metrics["parameters"]["total"] + 2 * (16 * 32 + 32)
    log = [json.loads(line) for line in (out.output_dir / "train_log.jsonl").read_text().splitlines()]
    assert all(r["loss_hidden"] > 0 for r in log if "loss_hidden" in r) and any("loss_hidden" in r for r in log)
    assert AutoModelForSequenceClassification.from_pretrained(out.output_dir).config.hidden_size == 16


def test_a_lora_adapter_teacher_is_merged(toy_recipe, tmp_path):
    lora = {**toy_recipe, "strategy": {"name": "lora", "r": 4, "alpha": 8},
            "train": {**toy_recipe["train"], "epochs": 2, "lr": 3e-2}, "output": {"dir": str(tmp_path / "lora")}}
    adapter = nlp_transfer.train(lora).output_dir
    teacher, folder = load_teacher(str(adapter))
    assert type(teacher).__name__ == "BertForSequenceClassification" and folder == str(adapter)
    out = nlp_transfer.train(distill_recipe(toy_recipe, str(adapter), str(tmp_path / "s"), student_layers=[1]))
    assert out.metrics["distill"]["parameters"]["teacher"] > out.metrics["distill"]["parameters"]["student"]


# ---------------------------------------------------------------- errors

def test_teacher_labels_must_match_the_data(toy_recipe, tiny_teacher_dir):
    recipe = distill_recipe(toy_recipe, tiny_teacher_dir, student_num_layers=1)
    recipe["task"] = {**recipe["task"], "labels": ["positive", "negative"]}
    with pytest.raises(ModelError, match=r"teacher's labels \['negative', 'positive'\].*data's labels \['positive', "
                                         r"'negative'\].*task.labels=\[negative, positive\]"):
        nlp_transfer.train(recipe)


def test_a_student_with_another_vocabulary_reads_the_raw_text_beside_its_token_ids(toy_recipe, tiny_teacher_dir, tmp_path):
    other = tmp_path / "other-vocab"
    BertTokenizerFast(vocab={w: i for i, w in enumerate(reversed(VOCAB))}, do_lower_case=True).save_pretrained(other)
    recipe = load_recipe(distill_recipe({**toy_recipe, "model": {"name": str(other), "max_length": 32}}, tiny_teacher_dir))
    strategy = DistillStrategy(recipe.strategy, _binary())
    assert strategy.raw_columns(recipe.task, load_tokenizer(str(other))) == ["text"]  # cross-tokenizer: see test_distill_xtok.py
    assert strategy.text.max_length == 512  # the teacher has no recipe.yaml: its tokenizer's limit, capped
    assert strategy.raw_columns(recipe.task, load_tokenizer(tiny_teacher_dir)) == [] and strategy.text is None
    with pytest.raises(ModelError, match=r"student's tokenizer .*other-vocab.* differs from the teacher's"):
        check_same_tokenizer(load_tokenizer(str(other)), tiny_teacher_dir, tiny_teacher_dir)  # the shared-ids path still checks


def test_missing_or_bare_teachers_fail_clearly(toy_recipe, tiny_model_dir, tmp_path):
    with pytest.raises(ModelError, match=r"strategy.teacher: cannot find 'no/such-teacher'.*Train the teacher first"):
        nlp_transfer.train(distill_recipe(toy_recipe, "no/such-teacher", str(tmp_path / "a"), student_num_layers=1))
    with pytest.raises(ModelError, match=r"is a BertModel without a trained sequence-classification head"):
        nlp_transfer.train(distill_recipe(toy_recipe, tiny_model_dir, str(tmp_path / "b"), student_num_layers=1))


def test_recipe_problems_are_reported_together(toy_recipe, tiny_teacher_dir):
    bad = distill_recipe(toy_recipe, "", student_layers=[2, 0], student_num_layers=0, temperature=0, alpha=1.5,
                         hidden_weight=-1, hidden_layers=[-1])
    with pytest.raises(RecipeError) as info:
        load_recipe(bad)
    text = str(info.value)
    for piece in ("strategy.teacher: missing", "give one of them, not both", "strategy.student_layers: got [2, 0]",
                  "strategy.student_num_layers: got 0", "strategy.temperature: got 0", "strategy.alpha: got 1.5",
                  "strategy.hidden_weight: got -1", "strategy.hidden_layers: got [-1]"):
        assert piece in text
    clash = distill_recipe(toy_recipe, tiny_teacher_dir, student_num_layers=2)
    clash["model"] = {"name": "some/other-encoder"}
    with pytest.raises(RecipeError, match=r"model.name: got 'some/other-encoder', but strategy.student_layers"):
        load_recipe(clash)
    no_student = distill_recipe(toy_recipe, tiny_teacher_dir)
    no_student["model"] = {"max_length": 32}
    with pytest.raises(RecipeError, match=r"strategy: no student; give model.name"):
        load_recipe(no_student)


def test_unlabeled_files_need_a_strategy_that_uses_them(toy_recipe, tmp_path):
    recipe = {**toy_recipe, "data": {"files": {**toy_recipe["data"]["files"], "unlabeled": str(tmp_path / "u.csv")}}}
    with pytest.raises(RecipeError, match=r"data.files.unlabeled: strategy 'full' does not train on unlabelled text.*\(distill\)"):
        load_recipe(recipe)


def test_bundled_recipe_loads_and_names_the_full_recipes_output():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "recipes" / "sst2" / "distill.yaml"
    recipe = load_recipe(path)
    full = load_recipe(path.with_name("full.yaml"))
    assert recipe.strategy.teacher == full.output.dir == recipe.model.name
    assert recipe.strategy.student_num_layers == 3
    assert recipe.task == full.task and recipe.data.source == full.data.source
    header = path.read_text().splitlines()
    assert "nlp-transfer train recipes/sst2/full.yaml" in "\n".join(header[:30])
    assert "data.files.train=../shared/data/sst2/train.tsv" in "\n".join(header[:30])


# ---------------------------------------------------------------- real MiniLM

@pytest.mark.integration
def test_minilm_distills_into_three_layers_keeping_its_accuracy(tmp_path):
    """The fine-tuned 6-layer MiniLM teaches a 3-layer copy of itself on 1,000 SST-2 rows."""
    sst2 = shared_data("sst2")
    base = {
        "model": {"name": MINILM, "max_length": 64},
        "task": {"type": "text-classification", "text": "sentence", "label": "label", "labels": ["negative", "positive"]},
        "data": {"files": {"train": str(sst2 / "train.tsv"), "validation": str(sst2 / "validation.tsv")},
                 "limit": {"train": 1000, "validation": 300}},
        "strategy": {"name": "full"},
        "train": {"epochs": 2, "batch_size": 16, "lr": 6e-5, "seed": 13, "metrics": ["accuracy", "f1"]},
        "output": {"dir": str(tmp_path / "teacher")},
    }
    teacher = nlp_transfer.train(base)
    distill = {**base, "model": {"max_length": 64},
               "strategy": {"name": "distill", "teacher": str(teacher.output_dir), "student_num_layers": 3},
               "train": {**base["train"], "epochs": 3, "lr": 1e-4, "batch_size": 32},
               "output": {"dir": str(tmp_path / "student")}}
    started = time.perf_counter()
    student = nlp_transfer.train(distill)
    stats = student.metrics["distill"]
    print(json.dumps({"seconds": round(time.perf_counter() - started, 1), **stats}, indent=1))
    assert stats["teacher_score"] == pytest.approx(teacher.metrics["validation"]["accuracy"])  # from the cached logits
    assert stats["student_score"] == student.metrics["validation"]["accuracy"] >= 0.7
    assert stats["retention"] >= 0.9
    assert stats["student_layers"] == [0, 3, 5]
    assert stats["parameters"]["student"] < stats["parameters"]["teacher"] / 1.2  # the embeddings (11.7M) stay whole
    assert stats["speed"]["rows"] == 256 and stats["speed"]["speedup"] > 1
    assert stats["teacher_cache"]["hits"] == {"validation": False, "train": False}
    # all-MiniLM-L6-v2 is a mean-pooling sentence encoder: teacher and student read the mean of the token states
    assert load_recipe(student.output_dir / "recipe.yaml").model.pooling == "mean"
    model = AutoModelForSequenceClassification.from_pretrained(student.output_dir, trust_remote_code=True)
    assert model.config.num_hidden_layers == 3 and model.config.id2label == {0: "negative", 1: "positive"}
    classifier = pipeline("text-classification", model=str(student.output_dir), trust_remote_code=True)
    assert classifier("a gorgeous, witty, seductive movie.")[0]["label"] == "positive"
