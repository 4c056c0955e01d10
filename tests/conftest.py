"""Shared fixtures. No network, ever: offline mode is set before transformers is imported."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import csv  # noqa: E402
import random  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# The larger real datasets (sst2/, conll2003/, stsb/, mrpc/, amazon_domains/ as in ../shared/data/README.md): one
# setting, NLP_TRANSFER_TEST_DATA; unset or empty, ../shared/data beside the repository. Where a set is absent, the
# tests that need it are skipped (tests never download) and the run ends with one line that says how to provide it.
DATA_VARIABLE = "NLP_TRANSFER_TEST_DATA"
REPO_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # what the bundled recipes' paths name
SHARED_DATA = Path(os.environ.get(DATA_VARIABLE) or REPO_SHARED_DATA)
NO_SHARED_DATA = f"real datasets not found in {SHARED_DATA}; set {DATA_VARIABLE}=/path/to/data (see README)"
# Small redistributable data that ships with the tests (credited in tests/data/README.md): every strategy, task type
# and command keeps a real-model test that runs on it (or on data the test makes) on a fresh clone.
TEST_DATA = Path(__file__).resolve().parent / "data"
MINILM = "sentence-transformers/all-MiniLM-L6-v2"

POSITIVE = ["good", "great", "fine", "lovely", "superb", "nice", "happy", "excellent"]
NEGATIVE = ["bad", "awful", "poor", "ugly", "terrible", "sad", "boring", "broken"]
NEUTRAL = ["the", "a", "movie", "food", "service", "was", "really", "quite", "and", "it", "very", "today"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *NEUTRAL]


def shared_data(name: str) -> Path:
    """``SHARED_DATA / name``; where it is absent, the calling test is skipped (tests never download).

    Call it first thing in the test, before any work. Every skip for an absent ``SHARED_DATA`` has the same
    reason, so ``-ra`` folds them into one line, and ``pytest_terminal_summary`` counts them.
    """
    folder = SHARED_DATA / name
    if not folder.is_dir():
        pytest.skip(NO_SHARED_DATA if not SHARED_DATA.is_dir() else f"{name}/ not found in {SHARED_DATA}; "
                    f"set {DATA_VARIABLE}=/path/to/data holding it (see README)")
    return folder


def missing_repo_shared_file(problem: str) -> bool:
    """Whether a recipe problem is only a file of ``../shared/data`` (a bundled recipe's path) that this checkout
    lacks: the recipe is fine, the larger datasets are not beside the repository."""
    if ": file not found: '" not in problem:
        return False
    path = Path(problem.split(": file not found: '")[1].split("'")[0]).resolve()
    return path.is_relative_to(REPO_SHARED_DATA.resolve()) and not path.exists()


def pytest_terminal_summary(terminalreporter):
    """One line for all the tests skipped because the larger real datasets are absent (however many they are)."""
    reasons = [report.longrepr[2] for report in terminalreporter.stats.get("skipped", [])
               if isinstance(report.longrepr, tuple) and f"set {DATA_VARIABLE}=" in report.longrepr[2]]
    if reasons:
        terminalreporter.write_line(f"{len(reasons)} tests skipped: real datasets not found in {SHARED_DATA}; "
                                    f"set {DATA_VARIABLE}=/path/to/data (see README)", yellow=True, bold=True)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """Accelerate keeps its settings (mixed precision, ...) process-wide: a run that ended in any way (finished,
    interrupted, failed) must not hand them to the next test that builds an ``Accelerator`` directly."""
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own feature cache folder."""
    monkeypatch.setenv("NLP_TRANSFER_CACHE", str(tmp_path / "nlp_transfer_cache"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny random-init BERT (hidden 32, 2 layers) with a word-level vocab, saved as a model folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    return str(folder)


def toy_sentences(n: int, seed: int) -> list[tuple[str, str]]:
    """Learnable sentiment sentences: the label is the polarity of the one opinion word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(NEUTRAL, rng.randint(2, 6)) + [rng.choice(POSITIVE if label == "positive" else NEGATIVE)]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


def write_csv(path: Path, rows, header=("text", "label")) -> str:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture
def toy_files(tmp_path) -> dict:
    """train.csv (96 rows) and validation.csv (32 rows) of learnable toy sentiment."""
    return {
        "train": write_csv(tmp_path / "train.csv", toy_sentences(96, seed=1)),
        "validation": write_csv(tmp_path / "validation.csv", toy_sentences(32, seed=2)),
    }


@pytest.fixture
def toy_recipe(tiny_model_dir, toy_files, tmp_path) -> dict:
    """A complete recipe dict on the tiny model and toy files; tests override what they probe."""
    return {
        "model": {"name": tiny_model_dir, "max_length": 32},
        "task": {"type": "text-classification", "text": "text", "label": "label"},
        "data": {"files": dict(toy_files)},
        "strategy": {"name": "full"},
        "train": {"epochs": 10, "batch_size": 16, "lr": 3e-3, "seed": 7, "log_every": 1, "warmup_ratio": 0.0},
        "output": {"dir": str(tmp_path / "out")},
    }


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory) -> str:
    """A tiny random-init 4-layer BERT classifier (negative/positive) with ``tiny_model_dir``'s vocab: a distill teacher."""
    return _tiny_sequence_teacher(tmp_path_factory.mktemp("tiny-teacher"), 1, id2label={0: "negative", 1: "positive"},
                                  label2id={"negative": 0, "positive": 1}, problem_type="single_label_classification")


def train_with_torchrun(recipe: dict, tmp_path: Path, port: int) -> dict:
    """Run ``nlp_transfer train`` on 2 CPU processes under torchrun; check the ranks agree; return metrics.json."""
    import json
    import subprocess
    import sys

    import yaml

    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "nlp_transfer", "-q", "train", str(recipe_file)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as run:
        try:
            _, stderr = run.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            # torchrun starts each rank in a session of its own: kill the whole tree (listed before torchrun dies,
            # or the ranks become orphans that hold the pipes open and live on)
            _kill_tree(run.pid)
            _, stderr = run.communicate()
            pytest.fail(f"torchrun did not finish within 300 s; it and every rank were killed. stderr:\n{stderr[-3000:]}")
    assert run.returncode == 0, stderr[-3000:]
    metrics = json.loads((Path(recipe["output"]["dir"]) / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    first, second = metrics["rank_weight_checksums"]
    assert first == second
    return metrics


def _kill_tree(pid: int) -> None:
    """Kill a process and all its descendants (read from /proc: each process's parent id), by process id."""
    import signal

    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    for member in reversed(tree):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


TOY_TAGS = ["O", "B-NEG", "B-POS", "I-NEG", "I-POS"]  # the order encode_tags derives from toy CoNLL files


def toy_tagged_sentences(n: int, seed: int) -> list[list[tuple[str, str]]]:
    """Learnable toy NER: one span of 1-2 opinion words (POS or NEG entities, IOB2 tags) among neutral words (O)."""
    rng = random.Random(seed)
    sentences = []
    for i in range(n):
        kind, pool = ("POS", POSITIVE) if i % 2 == 0 else ("NEG", NEGATIVE)
        words = [(w, "O") for w in rng.sample(NEUTRAL, rng.randint(2, 5))]
        span = [(w, ("B-" if j == 0 else "I-") + kind) for j, w in enumerate(rng.sample(pool, rng.randint(1, 2)))]
        at = rng.randint(0, len(words))
        sentences.append(words[:at] + span + words[at:])
    return sentences


def write_conll(path: Path, sentences, docstart: bool = True) -> str:
    """CoNLL-2003 layout: ``word POS tag`` per line, a blank line after each sentence."""
    lines = ["-DOCSTART- -X- -X- O", ""] if docstart else []
    for sentence in sentences:
        lines += [f"{word} X {tag}" for word, tag in sentence] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return str(path)


@pytest.fixture
def toy_conll_files(tmp_path) -> dict:
    """train.txt (96 sentences) and validation.txt (32) of toy NER in CoNLL format."""
    return {
        "train": write_conll(tmp_path / "train.txt", toy_tagged_sentences(96, seed=1)),
        "validation": write_conll(tmp_path / "validation.txt", toy_tagged_sentences(32, seed=2)),
    }


@pytest.fixture
def toy_token_recipe(toy_recipe, toy_conll_files) -> dict:
    """``toy_recipe`` as token classification on ``toy_conll_files``."""
    return {**toy_recipe, "task": {"type": "token-classification"}, "data": {"files": dict(toy_conll_files), "format": "conll"},
            "train": {**toy_recipe["train"], "metrics": ["f1", "accuracy"]}}


@pytest.fixture(scope="session")
def tiny_token_teacher_dir(tmp_path_factory) -> str:
    """A tiny random-init 4-layer BERT token tagger (``TOY_TAGS``) with ``tiny_model_dir``'s vocab: a distill teacher."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-token-teacher")
    BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(2)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, id2label=dict(enumerate(TOY_TAGS)),
                        label2id={t: i for i, t in enumerate(TOY_TAGS)})
    BertForTokenClassification(config).save_pretrained(folder)
    return str(folder)
# ------------------------------------------------------------------ images
IMAGE_CLASSES = ("horizontal", "vertical")


def stripe_image(label: str, seed: int, size: int = 16):
    """A learnable greyscale image: stripes along ``label``'s direction at a random phase, plus noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    stripes = ((np.arange(size) + rng.integers(0, 4)) // 2 % 2).astype(float)
    pixels = np.tile(stripes[:, None] if label == "horizontal" else stripes[None, :], (1, size) if label == "horizontal" else (size, 1))
    pixels = 0.8 * pixels + 0.2 * rng.random((size, size))
    return Image.fromarray((pixels * 255).astype(np.uint8), mode="L")


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """An imagefolder: train/ (12 per class) and validation/ (6 per class) PNGs of two stripe directions."""
    root = tmp_path / "stripes"
    for split, n, offset in (("train", 12, 0), ("validation", 6, 1000)):
        for label in IMAGE_CLASSES:
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                stripe_image(label, offset + i + (500 if label == "vertical" else 0)).save(folder / f"{i}.png")
    return root


def _save_image_processor(folder, size: int) -> None:
    from transformers import ViTImageProcessorPil

    ViTImageProcessorPil(size={"height": size, "width": size}).save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_vit_dir(tmp_path_factory) -> str:
    """A tiny random-init ViT backbone (16x16 images, 8x8 patches, width 32, 2 layers) and its image processor."""
    import torch
    from transformers import ViTConfig, ViTModel

    folder = tmp_path_factory.mktemp("tiny-vit")
    torch.manual_seed(0)
    ViTModel(ViTConfig(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64), add_pooling_layer=False).save_pretrained(folder)
    _save_image_processor(folder, 16)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_resnet_dir(tmp_path_factory) -> str:
    """A tiny random-init ResNet backbone (2 stages, widths 8 and 16) and its image processor."""
    import torch
    from transformers import ResNetConfig, ResNetModel

    folder = tmp_path_factory.mktemp("tiny-resnet")
    torch.manual_seed(0)
    ResNetModel(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1])).save_pretrained(folder)
    _save_image_processor(folder, 16)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_vit_teacher_dir(tmp_path_factory) -> str:
    """A tiny random-init 4-layer ViT classifier (horizontal/vertical): a distill teacher for images."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    folder = tmp_path_factory.mktemp("tiny-vit-teacher")
    torch.manual_seed(1)
    config = ViTConfig(image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                       intermediate_size=64, id2label=dict(enumerate(IMAGE_CLASSES)),
                       label2id={n: i for i, n in enumerate(IMAGE_CLASSES)}, problem_type="single_label_classification")
    ViTForImageClassification(config).save_pretrained(folder)
    _save_image_processor(folder, 16)
    return str(folder)


@pytest.fixture
def image_recipe(tiny_vit_dir, image_folder, tmp_path) -> dict:
    """A complete image recipe dict on the tiny ViT and the stripes image folder."""
    return {
        "model": {"name": tiny_vit_dir},
        "task": {"type": "image-classification", "image": "image", "label": "label"},
        "data": {"source": "imagefolder", "dir": str(image_folder)},
        "strategy": {"name": "full"},
        "train": {"epochs": 5, "batch_size": 8, "lr": 3e-3, "seed": 7, "log_every": 1, "warmup_ratio": 0.0,
                  "metrics": ["accuracy"]},
        "output": {"dir": str(tmp_path / "out")},
    }


# ------------------------------------------------------------------ multi-label and regression
def toy_multilabel_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Toy sentences with one or two labels: the polarity, plus ``long`` for sentences of 5+ words (``a|b`` strings)."""
    return [(text, label + ("|long" if len(text.split()) >= 5 else "")) for text, label in toy_sentences(n, seed)]


def toy_scores(n: int, seed: int) -> list[tuple[str, float]]:
    """Toy sentences scored 1.0 (positive) or 0.0 (negative), plus a little noise: a learnable regression."""
    rng = random.Random(seed)
    return [(text, round((1.0 if label == "positive" else 0.0) + rng.uniform(-0.1, 0.1), 3))
            for text, label in toy_sentences(n, seed)]


TOY_MULTILABELS = ["long", "negative", "positive"]  # the order the labels are derived in (sorted)


@pytest.fixture
def toy_multilabel_recipe(toy_recipe, tmp_path) -> dict:
    files = {"train": write_csv(tmp_path / "ml_train.csv", toy_multilabel_rows(96, seed=1)),
             "validation": write_csv(tmp_path / "ml_validation.csv", toy_multilabel_rows(32, seed=2))}
    return {**toy_recipe, "task": {"type": "multi-label-classification"}, "data": {"files": files},
            "train": {**toy_recipe["train"], "metrics": ["f1_micro"]}}


@pytest.fixture
def toy_regression_recipe(toy_recipe, tmp_path) -> dict:
    files = {"train": write_csv(tmp_path / "reg_train.csv", toy_scores(96, seed=1)),
             "validation": write_csv(tmp_path / "reg_validation.csv", toy_scores(32, seed=2))}
    return {**toy_recipe, "task": {"type": "regression"}, "data": {"files": files},
            "train": {**toy_recipe["train"], "metrics": ["pearson"]}}


def _tiny_sequence_teacher(folder, seed: int, **config) -> str:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(seed)
    BertForSequenceClassification(BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                             intermediate_size=64, max_position_embeddings=64, **config)).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_multilabel_teacher_dir(tmp_path_factory) -> str:
    """A tiny random-init 4-layer multi-label BERT classifier (``TOY_MULTILABELS``): a distill teacher."""
    return _tiny_sequence_teacher(tmp_path_factory.mktemp("tiny-ml-teacher"), 3, id2label=dict(enumerate(TOY_MULTILABELS)),
                                  label2id={n: i for i, n in enumerate(TOY_MULTILABELS)},
                                  problem_type="multi_label_classification")


@pytest.fixture(scope="session")
def tiny_regression_teacher_dir(tmp_path_factory) -> str:
    """A tiny random-init 4-layer BERT regressor (one output): a distill teacher."""
    return _tiny_sequence_teacher(tmp_path_factory.mktemp("tiny-reg-teacher"), 4, num_labels=1, problem_type="regression")


# ------------------------------------------------------------------ MPNet (another family, another tokenizer)
# The same words as VOCAB in another order, with MPNet's special tokens, and "superb"/"boring" split into
# word pieces: a tokenizer that differs from the BERT fixtures' in ids, special tokens and word splitting.
MPNET_VOCAB = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>", *NEUTRAL[::-1], *[w for w in NEGATIVE if w != "boring"],
               *[w for w in POSITIVE if w != "superb"], "super", "##b", "bor", "##ing"]


def save_mpnet_tokenizer(folder) -> None:
    from transformers import MPNetTokenizer

    MPNetTokenizer(vocab={word: i for i, word in enumerate(MPNET_VOCAB)}).save_pretrained(folder)


def tiny_mpnet_config(**extra):
    from transformers import MPNetConfig

    # max_position_embeddings: MPNet's positions start after the padding index (2 + max_length)
    settings = dict(vocab_size=len(MPNET_VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, max_position_embeddings=66)
    return MPNetConfig(**{**settings, **extra})


@pytest.fixture(scope="session")
def tiny_mpnet_dir(tmp_path_factory) -> str:
    """A tiny random-init MPNet encoder (hidden 32, 2 layers) with ``MPNET_VOCAB``, saved as a model folder."""
    import torch
    from transformers import MPNetModel

    folder = tmp_path_factory.mktemp("tiny-mpnet")
    save_mpnet_tokenizer(folder)
    torch.manual_seed(0)
    MPNetModel(tiny_mpnet_config()).save_pretrained(folder)
    return str(folder)
