"""The real pretrained MiniLM learns well above chance with every strategy, task type and command.

The first part runs on a fresh clone with nothing beside it: small data that ships in ``tests/data/`` (UCI
sentences, CC BY 4.0, credited in ``tests/data/README.md``) or that the test makes (a synthetic NER set, a
multi-label and a regression set derived from the UCI rows). Few rows (96-180), 1-2 epochs, 64 tokens.
The last part reads real SST-2 (``NLP_TRANSFER_TEST_DATA``) and is skipped where it is absent. Image
classification's real-model test is the digits transfer demo in ``test_vision.py``.
"""

import contextlib
import io
import json
import random
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from conftest import MINILM, TEST_DATA, shared_data, write_conll
from transformers import AutoModelForSequenceClassification, pipeline

import nlp_transfer
from nlp_transfer.cli import main

pytestmark = pytest.mark.integration

UCI = TEST_DATA / "uci_sentences"  # amazon, imdb, yelp: 200 rows each, balanced, {"text", "label": 0 | 1}
SENTIMENT = ["negative", "positive"]
POSITIVE_TEXT = "The food was delicious and the staff were lovely."
NEGATIVE_TEXT = "Terrible quality, it broke after two days. Avoid."


def _uci(source: str) -> list[dict]:
    return [json.loads(line) for line in (UCI / f"{source}.jsonl").read_text(encoding="utf-8").splitlines()]


def _write_jsonl(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def _sentiment_recipe(out: Path, strategy: dict, train: dict) -> dict:
    """Amazon reviews (160) -> Yelp reviews (120): real MiniLM on shipped UCI rows, cross-site validation."""
    return {
        "model": {"name": MINILM, "max_length": 64},
        "task": {"type": "text-classification", "labels": SENTIMENT},
        "data": {"files": {"train": str(UCI / "amazon.jsonl"), "validation": str(UCI / "yelp.jsonl")},
                 "limit": {"train": 160, "validation": 120}},
        "strategy": strategy,
        "train": {"batch_size": 16, "seed": 13, "metrics": ["accuracy", "f1"], **train},
        "output": {"dir": str(out)},
    }


def _json_out(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


# ------------------------------------------------------------------ the commands, on one model trained by `train`
@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """``nlp-transfer train`` of frozen MiniLM + a new head on the shipped UCI rows; the commands below read it."""
    folder = tmp_path_factory.mktemp("cli-minilm")
    recipe = _sentiment_recipe(folder / "out", {"name": "frozen"}, {"epochs": 12, "lr": 1e-2, "batch_size": 32})
    recipe["data"]["files"]["test"] = str(UCI / "imdb.jsonl")  # a third site, never trained on
    recipe["data"]["limit"]["test"] = 120
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("NLP_TRANSFER_CACHE", str(folder / "cache"))
        assert main(["-q", "train", str(path)]) == 0
    text = printed.getvalue()
    return {"recipe": path, "out": folder / "out", "printed": json.loads(text[text.index("{"):])}


def test_train_command_learns_with_a_frozen_encoder(cli_run):
    printed, out = cli_run["printed"], cli_run["out"]
    assert printed["output_dir"] == str(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["strategy"] == "frozen" and metrics["data"] == {"train": 160, "validation": 120, "test": 120}
    assert metrics["validation"]["accuracy"] >= 0.75, metrics["validation"]  # chance: 0.5 (balanced)
    assert metrics["parameters"]["trainable_percent"] < 1.0
    # MiniLM's folder says mean pooling: the head reads the mean, and its class ships beside the weights
    model = AutoModelForSequenceClassification.from_pretrained(out, trust_remote_code=True)
    assert model.config.id2label == {0: "negative", 1: "positive"}


def test_evaluate_and_predict_commands(cli_run, capsys):
    out = cli_run["out"]
    assert main(["evaluate", str(out)]) == 0
    scores = _json_out(capsys)["validation"]
    assert scores == pytest.approx(json.loads((out / "metrics.json").read_text())["validation"], abs=1e-4)
    assert main(["evaluate", str(out), "--split", "test"]) == 0
    assert _json_out(capsys)["test"]["accuracy"] >= 0.7  # movie reviews: a site the model never saw
    assert main(["predict", str(out), POSITIVE_TEXT, NEGATIVE_TEXT]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in lines] == ["positive", "negative"], lines


def test_validate_command_resolves_the_real_models_defaults(cli_run, capsys):
    assert main(["validate", str(cli_run["recipe"]), "strategy.name=partial", "train.lr=null"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["model"]["pooling"] == "mean"  # read from the real MiniLM folder (a sentence-transformers model)
    assert resolved["strategy"]["name"] == "partial" and resolved["train"]["lr"] == 1e-4  # the strategy's default
    assert main(["validate", str(cli_run["recipe"]), "strategy.name=frozn", "data.limit.train=-1"]) == 2
    err = capsys.readouterr().err
    assert "2 problems" in err and "unknown strategy 'frozn'" in err and "data.limit.train: got -1" in err


def test_optimize_command_measures_variants_of_the_real_model(cli_run, tmp_path, capsys):
    out = shutil.copytree(cli_run["out"], tmp_path / "out")
    assert main(["-q", "optimize", str(out), "--variants", "fp32,int8-dynamic", "--rows", "120", "--repeats", "1",
                 "--tolerance", "3"]) == 0
    printed = _json_out(capsys)
    assert printed["metric"] == "accuracy" and printed["selected"] in ("fp32", "int8-dynamic")
    measured = printed["variants"]
    assert {measured[v]["status"] for v in ("fp32", "int8-dynamic")} == {"measured"}, measured
    assert main(["predict", str(out), POSITIVE_TEXT, NEGATIVE_TEXT]) == 0  # the selected variant predicts
    assert [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()] == ["positive", "negative"]


def test_push_command_uploads_a_real_adapter_to_a_local_hub(lora_run, monkeypatch, capsys):
    from hub_server import FakeHub
    from huggingface_hub import ModelCard
    from huggingface_hub import constants as hub_constants

    token = "hf_TestSecretToken0123456789"
    real_connect = socket.socket.connect

    def loopback_only(sock, address):  # no network, ever: only the fake Hub on 127.0.0.1
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise ConnectionRefusedError(f"test tried to reach {address}")
        return real_connect(sock, address)

    out = lora_run.output_dir
    with FakeHub(token) as hub:
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(hub_constants, "ENDPOINT", hub.url)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", token)
        monkeypatch.setattr(socket.socket, "connect", loopback_only)
        assert main(["push", str(out), "--repo-id", "tester/minilm-uci-lora", "--what", "adapter"]) == 0
        assert list(json.loads(capsys.readouterr().out)["commits"]) == ["tester/minilm-uci-lora"]
        files = hub.files("tester/minilm-uci-lora")
        assert hub.unexpected() == []
    assert files["adapter_model.safetensors"] == (out / "adapter_model.safetensors").read_bytes()
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == MINILM
    assert not any(name.startswith("merged/") for name in files)
    card = ModelCard(files["README.md"].decode())
    assert card.data.base_model == MINILM and card.data.library_name == "peft"
    assert card.data.model_name == "tester/minilm-uci-lora"


def test_models_command_puts_minilm_into_the_hf_cache(tmp_path, capsys):
    import torch
    from transformers import AutoModel

    cache = tmp_path / "hf-cache"
    assert main(["-q", "models", "fetch", MINILM, "--cache-dir", str(cache)]) == 0
    assert capsys.readouterr().out.startswith(f"{MINILM}: fetched at {cache}")
    assert main(["models", "list", "--json", "--cache-dir", str(cache)]) == 0
    listed = {row["repo_id"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed[MINILM]["status"] == "cached" and listed[MINILM]["size_bytes"] > 80_000_000
    model = AutoModel.from_pretrained(MINILM, cache_dir=str(cache), local_files_only=True).eval()  # by its Hub id
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(MINILM, cache_dir=str(cache), local_files_only=True)
    with torch.inference_mode():
        states = model(**tokenizer(["a lovely day", "a dreadful day"], return_tensors="pt", padding=True)).last_hidden_state
    assert states.shape[-1] == 384 and torch.isfinite(states).all()


def test_compare_command_reports_transfer_over_training_from_scratch(cli_run, tmp_path, capsys):
    report = tmp_path / "cmp"
    assert main(["-q", "compare", str(cli_run["recipe"]), "data.limit.train=96", "--out", str(report),
                 "--strategies", "frozen", "--fractions", "1", "--baseline", "scratch", "--no-figures",
                 "--set", "scratch:train.epochs=1", "--set", "scratch:train.lr=1e-4", "--jobs", "2"]) == 0
    saved = json.loads((report / "report.json").read_text())
    accuracy = saved["tables"]["accuracy"]  # in points, on the recipe's test split (IMDB: a site never trained on)
    frozen, scratch = accuracy["frozen"]["1"], accuracy["scratch"]["1"]
    assert saved["split"] == "test" and frozen["train_rows"] == scratch["train_rows"] == 96
    assert frozen["mean"] >= 70 and saved["judgments"]["gain"]["frozen"]["1"]["gain"] >= 10, accuracy  # plain transfer
    assert saved["judgments"]["negative_transfer"] == [] and saved["judgments"]["recommendation"]["1"]["strategy"] == "frozen"
    assert "Transfer gain of **frozen** over scratch" in (report / "report.md").read_text()


# ------------------------------------------------------------------ the strategies and task types, in the Python API
@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """``lora`` with an ``adapt:`` section (mmd): labelled Amazon reviews, unlabelled IMDB sentences; the IMDB labels
    only score the result."""
    tmp_path = tmp_path_factory.mktemp("lora-adapt")
    imdb = _uci("imdb")
    recipe = _sentiment_recipe(tmp_path / "lora", {"name": "lora", "r": 8, "alpha": 16},
                               {"epochs": 2, "lr": 2e-3})
    recipe["model"]["pooling"] = "mean"  # what the sentence encoder was trained for (lora's own default is cls)
    # 96 = 8 batches of 12 source + 4 target rows. 160 would end on a batch of 4 source rows and ONE target row,
    # whose unbiased MMD divides by m (m - 1) = 0: a NaN loss (a problem of adapt's short last batch, not of this test)
    recipe["data"]["limit"]["train"] = 96
    recipe["data"]["files"]["test"] = _write_jsonl(tmp_path / "imdb_test.jsonl", imdb[120:])
    target = _write_jsonl(tmp_path / "imdb_text.jsonl", [{"text": r["text"]} for r in imdb[:120]])
    recipe["adapt"] = {"target": {"files": [target]}, "method": "mmd", "target_ratio": 0.25, "eval_rows": 32}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "cache"))
        return nlp_transfer.train(recipe)


def test_lora_adapts_amazon_reviews_to_movie_reviews(lora_run):
    out = lora_run
    metrics = out.metrics
    assert metrics["validation"]["accuracy"] >= 0.75, metrics["validation"]  # chance: 0.5 (balanced)
    assert metrics["test"]["accuracy"] >= 0.7, metrics["test"]  # the target site: 80 labelled rows never trained on
    assert metrics["parameters"]["trainable_percent"] < 2.0
    assert metrics["adapt"]["method"] == "mmd" and metrics["data"]["target"] == 120 and metrics["train"]["steps"] == 16
    assert "proxy_a_distance" in metrics["adapt"]["last_evaluation"]
    assert json.loads((out.output_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == MINILM
    classifier = pipeline("text-classification", model=str(out.output_dir / "merged"), trust_remote_code=True)
    assert [r["label"] for r in classifier([POSITIVE_TEXT, NEGATIVE_TEXT])] == ["positive", "negative"]


def test_distill_teaches_a_three_layer_student_from_the_trained_model(cli_run, tmp_path):
    teacher = json.loads((cli_run["out"] / "metrics.json").read_text())["validation"]["accuracy"]
    recipe = _sentiment_recipe(tmp_path / "student", {"name": "distill", "teacher": str(cli_run["out"]),
                                                      "student_num_layers": 3, "speed_rows": 64},
                               {"epochs": 2, "lr": 1e-4})
    recipe["data"]["limit"]["train"] = 96
    recipe["model"] = {"max_length": 64}  # the student is a copy of the teacher's own backbone
    student = nlp_transfer.train(recipe)
    stats = student.metrics["distill"]
    assert stats["teacher_score"] == pytest.approx(teacher, abs=1e-4)
    assert stats["student_layers"] == [0, 3, 5]
    assert stats["student_score"] == student.metrics["validation"]["accuracy"] >= 0.7, stats
    assert stats["retention"] >= 0.9, stats
    assert stats["speed"]["rows"] == 64 and stats["parameters"]["student"] < stats["parameters"]["teacher"]
    model = AutoModelForSequenceClassification.from_pretrained(student.output_dir, trust_remote_code=True)
    assert model.config.num_hidden_layers == 3


SITES = {"amazon": "product", "imdb": "movie", "yelp": "restaurant"}


def _site_rows(start: int, stop: int) -> list[dict]:
    """Rows ``start:stop`` of each shipped file, interleaved, with their site's topic kept as ``site``."""
    rows = [{**row, "site": SITES[source]} for source in SITES for row in _uci(source)[start:stop]]
    random.Random(start).shuffle(rows)
    return rows


def test_partial_learns_multi_label_polarity_and_topic(tmp_path):
    """Two labels a row, derived from the UCI rows: the polarity and the site's topic (product, movie, restaurant)."""
    def labelled(rows):
        return [{"text": r["text"], "label": f"{SENTIMENT[r['label']]}|{r['site']}"} for r in rows]

    files = {"train": _write_jsonl(tmp_path / "train.jsonl", labelled(_site_rows(0, 60))),
             "validation": _write_jsonl(tmp_path / "validation.jsonl", labelled(_site_rows(160, 200)))}
    out = nlp_transfer.train({
        "model": {"name": MINILM, "max_length": 64}, "task": {"type": "multi-label-classification"},
        "data": {"files": files}, "strategy": {"name": "partial", "train_top_layers": 2},
        "train": {"epochs": 2, "batch_size": 16, "lr": 3e-4, "seed": 13, "metrics": ["f1_micro"]},
        "output": {"dir": str(tmp_path / "partial")},
    })
    metrics = out.metrics
    # predicting every label scores 0.57 micro F1 (2 of 5 labels a row); none or a constant guess less
    assert metrics["validation"]["f1_micro"] >= 0.8, metrics["validation"]
    assert 0 < metrics["parameters"]["trainable_percent"] < 50
    model = AutoModelForSequenceClassification.from_pretrained(out.output_dir, trust_remote_code=True)
    assert sorted(model.config.id2label.values()) == ["movie", "negative", "positive", "product", "restaurant"]
    [predicted] = nlp_transfer.predict(out.output_dir, ["The pasta was cold and the waiter was rude."])
    assert {"negative", "restaurant"} <= set(predicted["labels"]), predicted


def test_gradual_learns_a_regression_score(tmp_path):
    """A score derived from the UCI rows: 0.2 for a negative review, 0.8 for a positive one, +-0.1 by site."""
    shift = {"product": -0.1, "movie": 0.0, "restaurant": 0.1}

    def scored(rows):
        return [{"text": r["text"], "label": round(0.2 + 0.6 * r["label"] + shift[r["site"]], 2)} for r in rows]

    files = {"train": _write_jsonl(tmp_path / "train.jsonl", scored(_site_rows(0, 60))),
             "validation": _write_jsonl(tmp_path / "validation.jsonl", scored(_site_rows(160, 200)))}
    out = nlp_transfer.train({
        "model": {"name": MINILM, "max_length": 64}, "task": {"type": "regression"},
        "data": {"files": files}, "strategy": {"name": "gradual", "unfreeze_every": 2, "unfreeze_unit": "steps"},
        "train": {"epochs": 2, "batch_size": 16, "lr": 3e-4, "seed": 13, "metrics": ["pearson", "mse"]},
        "output": {"dir": str(tmp_path / "gradual")},
    })
    scores = out.metrics["validation"]
    assert scores["pearson"] >= 0.6, scores  # a constant (or random) prediction correlates 0
    [good, bad] = nlp_transfer.predict(out.output_dir, [POSITIVE_TEXT, NEGATIVE_TEXT])
    assert good["score"] > bad["score"] + 0.2, (good, bad)


# A synthetic NER set in CoNLL layout: names, organisations and places from word lists in a few sentence
# templates. Validation uses entities the training set never has, so the model must read them, not remember them.
PEOPLE = ["Maria Lopez", "John Smith", "Anna Weber", "David Chen", "Sara Rossi", "Peter Novak", "Laura Martin",
          "Ahmed Khan", "Julia Fischer", "Tom Baker", "Elena Petrova", "Carlos Silva", "Nina Berg", "Paul Dubois"]
ORGANIZATIONS = ["Siemens", "Google", "Microsoft", "Toyota", "Nestle", "Reuters", "Oxfam", "Unilever", "Boeing",
                 "Nokia", "Intel", "Pfizer", "Shell", "Philips"]
PLACES = ["Paris", "Berlin", "Madrid", "Tokyo", "Chicago", "Toronto", "Sydney", "Rome", "Vienna", "Cairo",
          "Lisbon", "Oslo", "Denver", "Mumbai"]
TEMPLATES = ["{PER} visited {LOC} last week .", "{PER} works for {ORG} in {LOC} .", "{ORG} opened an office in {LOC} .",
             "the report by {PER} was published on Monday .", "{PER} and {PER} met at the {ORG} headquarters .",
             "shares of {ORG} fell sharply on Friday .", "it rained all day in {LOC} .",
             "{PER} said {ORG} will hire more staff ."]
POOLS = {"PER": PEOPLE, "ORG": ORGANIZATIONS, "LOC": PLACES}


def _ner_sentences(n: int, seed: int, half: int) -> list[list[tuple[str, str]]]:
    """``n`` tagged sentences (IOB2) whose entities come from one half of each word list (0: train, 1: validation)."""
    rng = random.Random(seed)
    sentences = []
    for i in range(n):
        words = []
        for token in TEMPLATES[i % len(TEMPLATES)].split():
            if token.startswith("{"):
                kind = token[1:4]
                pool = POOLS[kind][half::2]
                words += [(w, ("B-" if j == 0 else "I-") + kind) for j, w in enumerate(rng.choice(pool).split())]
            else:
                words.append((token, "O"))
        sentences.append(words)
    return sentences


def test_full_fine_tuning_learns_synthetic_entities(tmp_path):
    files = {"train": write_conll(tmp_path / "train.txt", _ner_sentences(128, seed=1, half=0)),
             "validation": write_conll(tmp_path / "validation.txt", _ner_sentences(64, seed=2, half=1))}
    out = nlp_transfer.train({
        "model": {"name": MINILM, "max_length": 64}, "task": {"type": "token-classification"},
        "data": {"files": files, "format": "conll"}, "strategy": {"name": "full"},
        "train": {"epochs": 1, "batch_size": 16, "lr": 3e-4, "warmup_ratio": 0.1, "seed": 13},
        "output": {"dir": str(tmp_path / "ner")},
    })
    scores = out.metrics["validation"]
    assert scores["f1"] >= 0.7, scores  # the all-O tagger scores 0 entity F1
    assert min(scores["f1_PER"], scores["f1_ORG"], scores["f1_LOC"]) >= 0.5, scores
    tagger = pipeline("token-classification", model=str(out.output_dir), aggregation_strategy="simple")
    found = {(e["word"], e["entity_group"]) for e in tagger("Laura Martin visited Oslo last week .")}
    assert {("laura martin", "PER"), ("oslo", "LOC")} <= found, found  # unseen in training; the tokenizer lowercases


def test_multitask_tasks_share_one_frozen_encoder(tmp_path):
    """``tasks:`` sentiment (Amazon -> Yelp) and the site a review comes from, on one frozen MiniLM."""
    def site_rows(start, stop):
        return [{"text": r["text"], "site": r["site"]} for r in _site_rows(start, stop)]

    out = nlp_transfer.train({
        "model": {"name": MINILM, "max_length": 64}, "strategy": {"name": "frozen"},
        "train": {"epochs": 12, "batch_size": 32, "lr": 1e-2, "seed": 13},
        "output": {"dir": str(tmp_path / "multitask")},
        "tasks": {
            "sentiment": {"type": "text-classification", "labels": SENTIMENT, "metrics": ["accuracy"],
                          "data": {"files": {"train": str(UCI / "amazon.jsonl"), "validation": str(UCI / "yelp.jsonl")},
                                   "limit": {"train": 160, "validation": 120}}},
            "site": {"type": "text-classification", "label": "site", "metrics": ["accuracy"],
                     "data": {"files": {"train": _write_jsonl(tmp_path / "site_train.jsonl", site_rows(0, 60)),
                                        "validation": _write_jsonl(tmp_path / "site_val.jsonl", site_rows(160, 200))}}},
        },
    })
    metrics = out.metrics
    assert sorted(p.name for p in out.output_dir.iterdir() if p.is_dir()) == ["sentiment", "site"]
    scores = metrics["validation"]  # each task's metrics under its name, and their mean (which picks the best model)
    assert scores["sentiment/accuracy"] >= 0.75 and scores["site/accuracy"] >= 0.8, scores  # chance: 0.5 and 0.33
    classifier = pipeline("text-classification", model=str(out.output_dir / "site"), trust_remote_code=True)
    assert classifier("The director wasted a great cast on this film.")[0]["label"] == "movie"



# ------------------------------------------------------------------ real SST-2 (NLP_TRANSFER_TEST_DATA)
def sst2_recipe(tmp_path, strategy: dict, train: dict) -> dict:
    """1,000 training rows and 300 validation rows of real SST-2, sequences cut at 64 tokens."""
    return {
        "model": {"name": MINILM, "max_length": 64},
        "task": {"type": "text-classification", "text": "sentence", "label": "label", "labels": ["negative", "positive"]},
        "data": {"files": {"train": str(shared_data("sst2") / "train.tsv"), "validation": str(shared_data("sst2") / "validation.tsv")},
                 "limit": {"train": 1000, "validation": 300}},
        "strategy": strategy,
        "train": {"batch_size": 32, "seed": 13, "metrics": ["accuracy", "f1"], **train},
        "output": {"dir": str(tmp_path / strategy["name"])},
    }


def test_full_fine_tuning_learns_sst2(tmp_path):
    out = nlp_transfer.train(sst2_recipe(tmp_path, {"name": "full"}, {"epochs": 2, "lr": 6e-5, "batch_size": 16}))
    assert out.metrics["validation"]["accuracy"] >= 0.75
    # MiniLM's folder says mean pooling, so the output is a mean-pooling head: its class ships beside the weights
    assert json.loads((out.output_dir / "config.json").read_text())["model_type"] == "nlp_transfer_mean_pooling"
    classifier = pipeline("text-classification", model=str(out.output_dir), trust_remote_code=True)
    assert classifier("a gorgeous, witty, seductive movie.")[0]["label"] == "positive"
    assert classifier("the plot is a tedious, joyless mess.")[0]["label"] == "negative"


def test_frozen_features_learn_sst2_and_are_cached(tmp_path):
    recipe = sst2_recipe(tmp_path, {"name": "frozen"}, {"epochs": 30, "lr": 3e-3, "batch_size": 64})
    recipe["model"]["pooling"] = "mean"
    out = nlp_transfer.train(recipe)
    assert out.metrics["validation"]["accuracy"] >= 0.75
    assert out.metrics["parameters"]["trainable_percent"] < 1.0
    assert out.metrics["feature_cache_hits"] == {"train": False, "validation": False}
    # the mean-pooling class ships beside the weights: plain transformers loads it
    model = AutoModelForSequenceClassification.from_pretrained(out.output_dir, trust_remote_code=True)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    # a second run on the same data reuses the cached features and scores the same
    again = nlp_transfer.train(recipe, overrides={"output.dir": str(tmp_path / "again")})
    assert again.metrics["feature_cache_hits"] == {"train": True, "validation": True}
    assert again.metrics["validation"]["accuracy"] == pytest.approx(out.metrics["validation"]["accuracy"])
    saved = json.loads((out.output_dir / "metrics.json").read_text())
    assert saved["validation"] == out.metrics["validation"]
