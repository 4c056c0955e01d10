"""``distill``: a fine-tuned teacher teaches a smaller student, in the one shared loop.

Distillation is a few overrides of the plain strategy, not a second trainer:

- ``build_model``: the student is ``model.name`` (any encoder; its tokenizer may differ from the
  teacher's) or built from the teacher, DistilBERT-style (embeddings, chosen encoder layers and
  the head copied; ``strategy.student_layers`` or ``student_num_layers`` evenly spaced).
- ``raw_columns``: when the two tokenize differently, the raw text stays beside the student's
  token ids and the teacher reads it through its own tokenizer (``distill_xtok``).
- ``prepare_data``: the teacher (eval mode, no gradients) runs ONCE over train, validation and
  ``data.files.unlabeled``; its logits (and, with ``hidden_weight``, the first-token states of the
  mapped layers) are cached on disk (``nlp_transfer.cache``, keyed by the teacher's weights,
  the tokenized data's fingerprint and the settings) and ride along in every batch. Later epochs
  and later runs never run the teacher again. ``cache_teacher: false`` runs it on the fly.
- ``loss``: see ``distillation_loss``; unlabeled rows carry ``labeled = 0`` and learn only from
  the teacher.
- ``run_metrics``: the teacher's validation score (from its cached logits), retention, parameter
  counts and the measured inference speed-up of the student over the teacher.

The student is saved as a plain transformers model (``AutoModelForSequenceClassification``,
``pipeline()``); the hidden-state projections, when any, train but are not exported.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from .. import cache
from .._lazy import lazy
from ..columns import column_values
from ..config import UNLABELED_SPLIT
from ..errors import ModelError
from ..metrics import greater_is_better
from ..tasks import IGNORE_INDEX, WORD_IDS, concat_rows, get_task_type
from .base import Strategy, StrategyOptions

if TYPE_CHECKING:
    from datasets import Dataset

    from .distill_xtok import TeacherText

np = lazy("numpy")
torch = lazy("torch")
F = lazy("torch.nn.functional")
datasets = lazy("datasets")
models = lazy("nlp_transfer.strategies.distill_models")
xtok = lazy("nlp_transfer.strategies.distill_xtok")

logger = logging.getLogger(__name__)

# Batch columns that are not model inputs.
_NOT_INPUTS = ("labels", "length", "labeled", "teacher_logits", "teacher_hidden", WORD_IDS)
SPEED_BATCH_SIZE = 32
SPEED_REPEATS = 3
_CACHE_VERSION = "distill-teacher-v1"


@dataclass
class DistillOptions(StrategyOptions):
    """``strategy`` keys of ``distill``.

    ``teacher``: fine-tuned model folder (full/merged output, or a LoRA adapter folder) or Hub id.
    ``student_layers``: teacher encoder layers (0-based) the student copies; ``student_num_layers``:
    that many, evenly spaced (first and last included). Either builds the student from the
    teacher (leave ``model.name`` out); neither distills into ``model.name``.
    ``temperature``, ``alpha``: the soft/hard mix (see ``distillation_loss``).
    ``hidden_weight``: weight of the hidden-state loss (0 = off): MSE between each student layer's
    first-token state (linearly projected when the widths differ) and that of its teacher layer.
    Only those first-token states are cached, (rows, student layers, teacher width) float32, and
    only when ``hidden_weight > 0``; whole sequences would be too big to keep on disk.
    ``hidden_layers``: the teacher layer each student layer mimics (default: the copied layers,
    else evenly spaced, TinyBERT-style: student layer j -> teacher layer (j+1)*T/S - 1).
    ``cache_teacher``: compute teacher outputs once and cache them on disk (false: every step).
    ``teacher_batch_size``: batch size of the teacher pass. ``speed_rows``: validation rows the
    speed-up is timed on (0 skips the measurement).
    ``teacher_max_length``: truncation length of the teacher's own tokenizer when it differs from the
    student's (default: the ``model.max_length`` the teacher was trained with, from its recipe.yaml,
    else its tokenizer's limit up to 512).
    """

    name: str = "distill"
    teacher: str = ""
    student_layers: list[int] | None = None
    student_num_layers: int | None = None
    temperature: float = 2.0
    alpha: float = 0.5
    hidden_weight: float = 0.0
    hidden_layers: list[int] | None = None
    cache_teacher: bool = True
    teacher_batch_size: int = 64
    speed_rows: int = 256
    teacher_max_length: int | None = None

    uses_unlabeled: ClassVar[bool] = True
    multi_task: ClassVar[bool] = False  # a teacher per task and a student built from it: not one shared encoder
    summary = "a student trained on the softened outputs of the teacher `{teacher}` (temperature {temperature}) and, with weight {alpha}, on the labels"
    description = "distilled student"
    train_defaults = {"lr": 1e-4}

    @property
    def copies_teacher(self) -> bool:
        """Whether the student is built from the teacher's own layers."""
        return self.student_layers is not None or self.student_num_layers is not None

    @property
    def head_lr_factor(self) -> float:
        """A student copied from the teacher keeps its trained head; a fresh student's head is new."""
        return 1.0 if self.copies_teacher else 10.0

    def complete(self, recipe) -> None:
        if self.copies_teacher and not recipe.model.name and self.teacher:
            recipe.model.name = self.teacher  # tokenizer and max_length come with the teacher

    def validate(self, recipe) -> list[str]:
        problems = []
        if not self.teacher:
            problems.append("strategy.teacher: missing; give the fine-tuned model to distill from: an nlp-transfer output "
                            "folder (e.g. runs/sst2-full; a LoRA adapter folder works too) or a Hub id")
        if self.student_layers is not None and self.student_num_layers is not None:
            problems.append("strategy.student_layers and strategy.student_num_layers: give one of them, not both")
        layers = self.student_layers
        if layers is not None and (not layers or min(layers) < 0 or layers != sorted(set(layers))):
            problems.append(f"strategy.student_layers: got {layers!r}; expected increasing teacher layer indices "
                            "(0-based, no repeats), e.g. [0, 2, 4]")
        if self.student_num_layers is not None and self.student_num_layers < 1:
            problems.append(f"strategy.student_num_layers: got {self.student_num_layers}; expected a positive integer, e.g. 3")
        name = recipe.model.name
        if self.copies_teacher and name and self.teacher and name != self.teacher:
            problems.append(f"model.name: got {name!r}, but strategy.student_layers/student_num_layers build the student "
                            "from the teacher; leave model.name out (on the command line: model.name=null), or set "
                            "strategy.student_num_layers=null and "
                            f"strategy.student_layers=null to distill into {name!r}")
        if not name and not self.copies_teacher:
            problems.append("strategy: no student; give model.name (any encoder; its tokenizer may differ from the teacher's) or build "
                            "it from the teacher with strategy.student_num_layers (e.g. 3) or strategy.student_layers")
        if self.temperature <= 0:
            problems.append(f"strategy.temperature: got {self.temperature}; expected a positive number, e.g. 2.0")
        if not 0 <= self.alpha <= 1:
            problems.append(f"strategy.alpha: got {self.alpha}; expected the weight of the label loss in [0, 1], e.g. 0.5")
        if self.hidden_weight < 0:
            problems.append(f"strategy.hidden_weight: got {self.hidden_weight}; expected a number >= 0 (0 turns it off)")
        if self.hidden_layers is not None and (self.hidden_weight == 0 or min(self.hidden_layers, default=-1) < 0):
            problems.append(f"strategy.hidden_layers: got {self.hidden_layers!r}; it needs strategy.hidden_weight > 0 "
                            "and one teacher layer index (0-based) per student layer")
        if self.teacher_batch_size < 1:
            problems.append(f"strategy.teacher_batch_size: got {self.teacher_batch_size}; expected a positive integer")
        if self.teacher_max_length is not None and self.teacher_max_length < 1:
            problems.append(f"strategy.teacher_max_length: got {self.teacher_max_length}; expected a positive number of "
                            "tokens, or null for the teacher's own")
        if self.speed_rows < 0:
            problems.append(f"strategy.speed_rows: got {self.speed_rows}; expected a number of rows >= 0 (0 skips timing)")
        if recipe.data.augment is not None and self.cache_teacher:
            problems.append("data.augment: strategy distill caches the teacher's outputs per input, which would not match "
                            "augmented images; remove data.augment or set strategy.cache_teacher=false")
        if UNLABELED_SPLIT in recipe.data.files and self.alpha == 1 and self.hidden_weight == 0:
            problems.append("data.files.unlabeled: with strategy.alpha=1 the teacher's soft targets have no weight, so "
                            "unlabelled rows teach nothing; lower strategy.alpha (e.g. 0.5) or drop data.files.unlabeled")
        return problems


class DistillStrategy(Strategy):
    """Train a student on the teacher's softened outputs plus (weight ``alpha``) the labels."""

    name = "distill"
    Options = DistillOptions

    def __init__(self, options, task):
        super().__init__(options, task)
        self.teacher: torch.nn.Module | None = None
        self.teacher_path: str | None = None
        self.student: torch.nn.Module | None = None
        self.copied_layers: list[int] | None = None
        self.hidden_map: list[int] | None = None  # teacher layer (0-based) per student layer
        self.teacher_cache_hits: dict[str, bool] = {}
        self.teacher_seconds = 0.0
        self.device = torch.device("cpu")
        self._validation: tuple[np.ndarray, np.ndarray] | None = None  # teacher logits, labels
        self._speed_rows: Dataset | None = None
        self._teacher_speed_rows: Dataset | None = None  # the same rows in the teacher's tokens (cross-tokenizer)
        self.text: TeacherText | None = None  # set when teacher and student tokenize differently
        self._tokenizer = None
        self._row_counts: dict[str, int] = {}

    # ------------------------------------------------------------------ model
    def build_model(self, build):
        teacher = self.load_teacher()
        if self.options.copies_teacher:
            depth = teacher.config.num_hidden_layers
            self.copied_layers = self.options.student_layers or models.evenly_spaced(depth, self.options.student_num_layers)
            student = models.build_student(teacher, self.copied_layers)
        else:
            student = build()
        if self.options.hidden_weight > 0:
            self.hidden_map = models.hidden_layer_map(student.config.num_hidden_layers, teacher.config.num_hidden_layers,
                                               self.copied_layers, self.options.hidden_layers)
        self.student = student
        return student

    def load_teacher(self):
        """The teacher, in eval mode without gradients (a LoRA adapter comes merged); loaded once."""
        if self.teacher is None:
            teacher, self.teacher_path = models.load_teacher(self.options.teacher)
            models.check_teacher_labels(teacher.config, self.task, self.options.teacher)
            self.teacher = teacher
        return self.teacher

    def prepare(self, model):
        model.requires_grad_(True)
        if self.hidden_map is None:
            return model
        return models.StudentWithProjections(model, self.teacher.config.hidden_size)

    # ------------------------------------------------------------------- data
    def raw_columns(self, task, processor) -> list[str]:
        """The text columns, when the teacher tokenizes differently (its outputs are then computed from the text)."""
        if self.task.kind.modality != "text":
            return []
        self.load_teacher()
        self.text = xtok.teacher_text(processor, self.teacher_path, self.options.teacher, self.task.kind,
                                      self.task.kind.input_columns(task), self.options.teacher_max_length)
        if self.text is not None and not self.options.cache_teacher:
            raise ModelError(f"strategy.cache_teacher: false runs the teacher on the student's token ids at every step, but "
                             f"the teacher ({self.options.teacher}) tokenizes differently from the student "
                             f"({processor.name_or_path}); set strategy.cache_teacher=true (its outputs are then computed "
                             "once from the raw text)")
        return list(self.text.columns) if self.text is not None else []

    def prepare_data(self, model, tokenizer, splits, accelerator):
        teacher = self.load_teacher()
        if self.text is None:
            models.check_same_tokenizer(tokenizer, self.teacher_path, self.options.teacher)
        self.device, self._tokenizer = accelerator.device, tokenizer
        speed_rows = _spread(splits["validation"], self.options.speed_rows)
        self._speed_rows = self._without_text(speed_rows)
        self._teacher_speed_rows = self.text.inputs(speed_rows) if self.text is not None else None
        fingerprint = cache.weights_fingerprint(teacher) if self.options.cache_teacher else None
        self._row_counts = {s: len(splits[s]) for s in ("train", UNLABELED_SPLIT) if s in splits}
        validation = splits["validation"]
        outputs = self._teacher_outputs("validation", validation, fingerprint, accelerator, hidden=False)
        logits = column_values(outputs, "teacher_logits")
        # NaN: words a cross-tokenizer teacher did not see; scored as all-zero logits (the first class)
        self._validation = (np.nan_to_num(_stack(logits, 0.0).float().numpy(), nan=0.0),
                            _stack(column_values(validation, "labels"), IGNORE_INDEX).numpy())
        train = [self._with_teacher(s, splits[s], fingerprint, accelerator) for s in ("train", UNLABELED_SPLIT) if s in splits]
        prepared = datasets.DatasetDict({s: ds for s, ds in splits.items() if s != UNLABELED_SPLIT})
        prepared["train"] = datasets.concatenate_datasets([train[0], *(ds.cast(train[0].features) for ds in train[1:])])
        if self.options.cache_teacher and self.device.type != "cpu":
            teacher.to("cpu")  # not needed while training; frees accelerator memory
        return datasets.DatasetDict({s: self._without_text(ds) for s, ds in prepared.items()})

    def _without_text(self, ds):
        """``ds`` without the raw text columns kept for the teacher (the student reads token ids only)."""
        text = [c for c in (self.text.columns if self.text is not None else ()) if c in ds.column_names]
        return ds.remove_columns(text) if text else ds

    def _with_teacher(self, split: str, ds, fingerprint, accelerator):
        """A training split plus its teacher outputs (when cached) and the ``labeled`` mask."""
        if self.options.cache_teacher:
            ds = datasets.concatenate_datasets([ds, self._teacher_outputs(split, ds, fingerprint, accelerator)], axis=1)
        else:
            self.teacher_cache_hits[split] = False  # the teacher runs on the fly, every step
        return ds.add_column("labeled", [int(split != UNLABELED_SPLIT)] * len(ds))

    def _teacher_outputs(self, split, ds, fingerprint, accelerator, hidden: bool = True):
        """Teacher outputs for a split: from the cache, computed and cached, or (cache off) computed."""
        hidden_map = self.hidden_map if hidden else None

        def build():
            with accelerator.autocast():  # the run's precision: bf16 makes a big teacher's one pass much faster on CPU
                if self.text is None:
                    return self._run_teacher(ds, hidden_map)
                teacher_inputs = self.text.inputs(ds)
                align = lambda rows: self.text.align(rows, teacher_inputs, ds, self._tokenizer)  # noqa: E731
                return self._run_teacher(teacher_inputs, hidden_map, self.text.tokenizer, align)

        if not self.options.cache_teacher:
            self.teacher_cache_hits[split] = False
            return build()
        key = cache.cache_key(_CACHE_VERSION, fingerprint, ds._fingerprint, self.task.type, hidden_map,
                              accelerator.mixed_precision, *((self.text.cache_part(),) if self.text is not None else ()))
        with accelerator.main_process_first():
            outputs, self.teacher_cache_hits[split] = cache.cached("teacher", key, build)
        return outputs

    def _run_teacher(self, ds, hidden_map: list[int] | None, tokenizer=None, align=None):
        """Teacher logits (and mapped first-token states) for every row, batched in length order.

        ``tokenizer``: the one that made ``ds`` (default: the student's). ``align``: maps the per-row
        logits (the teacher's positions) to the student's rows (``TaskType.align_targets``).
        """
        with torch.inference_mode():
            return self._teacher_pass(ds, hidden_map, tokenizer, align)

    def _teacher_pass(self, ds, hidden_map: list[int] | None, tokenizer=None, align=None):
        from ..data import longest_first_order

        started = time.perf_counter()
        teacher = self.teacher.to(self.device).eval()
        order = longest_first_order(ds)
        inputs = ds.remove_columns([c for c in ds.column_names if c in _NOT_INPUTS])
        pad = self.task.kind.collator(tokenizer or self._tokenizer)
        per_token = self.task.kind.per_token
        logits = [None] * len(ds) if per_token else np.zeros((len(ds), self.task.num_labels), dtype=np.float32)
        hidden = np.zeros((len(ds), len(hidden_map), teacher.config.hidden_size), np.float32) if hidden_map else None
        size = self.options.teacher_batch_size
        for start in range(0, len(ds), size):
            rows = order[start:start + size]
            batch = {k: v.to(self.device) for k, v in pad([inputs[int(i)] for i in rows]).items()}
            out_logits, out_hidden = teacher_forward(teacher, batch, hidden_map)
            if per_token:  # each row's own positions, padding dropped
                for i, row, mask in zip(rows, out_logits.float().cpu().numpy(), batch["attention_mask"].bool().cpu().numpy()):
                    logits[int(i)] = row[mask]
            else:
                logits[rows] = out_logits.float().cpu().numpy()
            if hidden is not None:
                hidden[rows] = out_hidden.float().cpu().numpy()
        if align is not None:
            logits = align(logits)
        columns = {"teacher_logits": logits} | ({"teacher_hidden": hidden} if hidden is not None else {})
        self.teacher_seconds += time.perf_counter() - started
        if per_token:  # rows of different lengths: (positions, labels) arrays
            features = {"teacher_logits": datasets.Array2D((None, self.task.num_labels), "float32")}
            if hidden is not None:
                features["teacher_hidden"] = datasets.Array2D(hidden.shape[1:], "float32")
            return datasets.Dataset.from_dict(columns, features=datasets.Features(features))
        return datasets.Dataset.from_dict(columns)

    def collator(self, processor):
        return DistillCollator(self.task.kind.collator(processor))

    # ------------------------------------------------------------------- loss
    def logits(self, model, batch):
        return model(**_model_inputs(batch)).logits

    def loss(self, model, batch, ctx):
        inputs = _model_inputs(batch)
        use_hidden = self.hidden_map is not None
        out = model(**inputs, output_hidden_states=True) if use_hidden else model(**inputs)
        teacher_logits, teacher_hidden = batch.get("teacher_logits"), batch.get("teacher_hidden")
        if teacher_logits is None:  # cache_teacher: false
            teacher = self.teacher.to(out.logits.device)
            with torch.no_grad():
                teacher_logits, teacher_hidden = teacher_forward(teacher, inputs, self.hidden_map)
        labeled = batch.get("labeled")
        labeled = torch.ones(len(out.logits), dtype=torch.bool, device=out.logits.device) if labeled is None else labeled.bool()
        total, parts = distillation_loss(out.logits, teacher_logits, batch["labels"], labeled, self.task.type,
                                         temperature=self.options.temperature, alpha=self.options.alpha)
        if use_hidden:
            parts["loss_hidden"] = hidden_loss(out.hidden_states, teacher_hidden)
            total = total + self.options.hidden_weight * parts["loss_hidden"]
        return total, {k: round(v.item(), 6) for k, v in parts.items()}

    # ---------------------------------------------------------------- metrics
    def run_metrics(self, metrics: dict, metric_names: list[str]) -> dict:
        teacher_logits, labels = self._validation
        teacher_scores = {"loss": self.task.loss(torch.from_numpy(teacher_logits), torch.from_numpy(labels)).item()}
        teacher_scores.update(self.task.kind.compute_metrics(metric_names, self.task.predictions(teacher_logits), labels,
                                                             self.task))
        main = metric_names[0] if metric_names else "loss"
        teacher_score, student_score = teacher_scores[main], metrics["validation"].get(main)
        teacher_params = sum(p.numel() for p in self.teacher.parameters())
        student_params = sum(p.numel() for p in self.student.parameters())
        return {
            "teacher": self.options.teacher,
            "teacher_validation": teacher_scores,
            "main_metric": main,
            "teacher_score": teacher_score,
            "student_score": student_score,
            "retention": _retention(main, student_score, teacher_score),
            "parameters": {"teacher": teacher_params, "student": student_params,
                           "compression_ratio": round(teacher_params / student_params, 4)},
            "student_layers": self.copied_layers,
            "tokenizers": "shared" if self.text is None else {"teacher": type(self.text.tokenizer).__name__,
                                                              "teacher_max_length": self.text.max_length},
            "hidden_layers": self.hidden_map,
            "rows": {"labeled": self._row_counts.get("train", 0), "unlabeled": self._row_counts.get(UNLABELED_SPLIT, 0)},
            "teacher_cache": {"enabled": self.options.cache_teacher, "hits": dict(self.teacher_cache_hits),
                              "teacher_seconds": round(self.teacher_seconds, 3)},
            "speed": self.measure_speedup() if self.options.speed_rows else None,
        }

    def measure_speedup(self) -> dict:
        """Inference time of teacher and student on the same validation rows and batch size.

        One warm-up pass each, then ``SPEED_REPEATS`` timed passes alternating the two models
        (so drifts in machine load hit both); medians are reported.
        """
        rows = self._speed_rows
        teacher_rows, teacher_tokenizer = ((self._teacher_speed_rows, self.text.tokenizer) if self.text is not None
                                           else (rows, self._tokenizer))  # each model reads its own tokens
        batches = {"teacher": self._batches(teacher_rows, teacher_tokenizer), "student": self._batches(rows, self._tokenizer)}
        models = {"teacher": self.teacher.to(self.device).eval(), "student": self.student.eval()}
        times: dict[str, list[float]] = {name: [] for name in models}
        for repeat in range(SPEED_REPEATS + 1):
            for name, model in models.items():
                seconds = _timed_pass(model, batches[name], self.device)
                if repeat:  # pass 0 is the warm-up
                    times[name].append(seconds)
        teacher_s, student_s = statistics.median(times["teacher"]), statistics.median(times["student"])
        if self.options.cache_teacher and self.device.type != "cpu":
            self.teacher.to("cpu")
        return {"rows": len(rows), "batch_size": SPEED_BATCH_SIZE, "repeats": SPEED_REPEATS, "device": str(self.device),
                "threads": torch.get_num_threads(), "teacher_seconds": round(teacher_s, 6),
                "student_seconds": round(student_s, 6), "speedup": round(teacher_s / student_s, 3)}

    def _batches(self, rows, tokenizer) -> list[dict]:
        pad = self.task.kind.collator(tokenizer)
        inputs = rows.remove_columns([c for c in rows.column_names if c in _NOT_INPUTS])
        return [{k: v.to(self.device) for k, v in pad([inputs[i] for i in range(s, min(s + SPEED_BATCH_SIZE, len(rows)))]).items()}
                for s in range(0, len(rows), SPEED_BATCH_SIZE)]


# ---------------------------------------------------------------------- losses
def distillation_loss(student_logits, teacher_logits, labels, labeled, task_type: str, *,
                      temperature: float = 2.0, alpha: float = 0.5):
    """``alpha * hard + (1 - alpha) * soft``; ``hard`` is averaged over labelled rows only.

    The task type gives both terms (``TaskType.loss`` and ``soft_loss``): for single-label heads,
    hard = CE and soft = T^2 * KL(softmax(teacher/T) || softmax(student/T)) (Hinton et al.; T^2 keeps
    gradients comparable across T); multi-label: BCE and the per-label Bernoulli KL; regression: MSE
    to the labels and MSE to the teacher. Token tasks count every tagged word as one example.

    Teacher rows that are NaN (per-token targets of words a teacher with another tokenizer did not
    see) add no soft term; the soft average is over the rows that have one.

    Args:
        labeled: Boolean per row; rows without labels (``data.files.unlabeled``) add only soft terms.

    Returns:
        The loss and its parts (``loss_hard``, ``loss_soft``) for logging.
    """
    kind = get_task_type(task_type)
    s, t = student_logits.float(), teacher_logits.float().to(student_logits.device)
    s, t, labels, labeled = kind.distill_rows(s, t, labels, labeled.to(s.device))
    known = torch.isfinite(t).all(-1)  # NaN: a word a cross-tokenizer teacher did not see (no soft target)
    if bool(known.all()):
        soft = kind.soft_loss(s, t, temperature)
    else:
        soft = kind.soft_loss(s[known], t[known], temperature) if known.any() else s.sum() * 0.0
    hard = kind.loss(s[labeled], labels[labeled], None) if labeled.any() else s.new_zeros(())
    return alpha * hard + (1 - alpha) * soft, {"loss_hard": hard.detach(), "loss_soft": soft.detach()}


def hidden_loss(student_states, teacher_states):
    """MSE between projected student and teacher first-token states, (batch, mapped layers, width)."""
    return F.mse_loss(student_states.float(), teacher_states.float().to(student_states.device))


def teacher_forward(teacher, inputs: dict, hidden_map: list[int] | None):
    """Teacher logits and (with ``hidden_map``) the first-token states of the mapped layers."""
    if hidden_map is None:
        return teacher(**inputs).logits, None
    out = teacher(**inputs, output_hidden_states=True)
    return out.logits, models.first_token_states(out, hidden_map, teacher)


# --------------------------------------------------------------------- helpers
class DistillCollator:
    """Dynamic padding for the token columns (stacking for images); teacher outputs and the ``labeled`` mask are stacked."""

    def __init__(self, pad):
        self.pad = pad

    def __call__(self, features: list[dict]) -> dict:
        extras = [k for k in ("teacher_logits", "teacher_hidden", "labeled") if k in features[0]]
        batch = self.pad([{k: v for k, v in f.items() if k not in extras} for f in features])
        for key in extras:
            dtype = torch.bool if key == "labeled" else torch.float32
            batch[key] = _stack([f[key] for f in features], 0.0).to(dtype)
        return batch


def _stack(rows: list, pad_value: float):
    """Rows as one tensor; per-token rows of different lengths are padded at the end."""
    tensors = [torch.as_tensor(np.asarray(r)).unsqueeze(0) for r in rows]
    return concat_rows(tensors, pad_value)


def _model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in _NOT_INPUTS}


def _spread(ds, n: int):
    """``n`` rows spread over a (length-sorted) split, so timing sees long and short inputs alike."""
    if n <= 0 or n >= len(ds):
        return ds
    return ds.select(np.linspace(0, len(ds) - 1, n).round().astype(int).tolist())


def _timed_pass(model, batches: list[dict], device) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for batch in batches:
            model(**batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _retention(metric: str, student: float | None, teacher: float) -> float | None:
    """Student score relative to the teacher's (>1 is better than the teacher, also for lower-is-better metrics)."""
    if student is None or not teacher or not student:
        return None
    return round(student / teacher if greater_is_better(metric) else teacher / student, 4)
