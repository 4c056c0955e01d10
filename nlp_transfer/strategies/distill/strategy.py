"""``distill``: a fine-tuned teacher teaches a smaller student, in the one shared loop.

Distillation is a few overrides of the plain strategy, not a second trainer:

- ``build_model``: the student is ``model.name`` (any encoder; its tokenizer may differ from the
  teacher's) or built from the teacher, DistilBERT-style (embeddings, chosen encoder layers and
  the head copied; ``strategy.student_layers`` or ``student_num_layers`` evenly spaced).
- ``raw_columns``: when the two tokenize differently, the raw text stays beside the student's
  token ids and the teacher reads it through its own tokenizer (``cross_tokenizer``).
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
from typing import TYPE_CHECKING

from ..._lazy import lazy
from ...data import cache
from ...data.columns import column_values
from ...errors import ModelError
from ...evaluation.metrics import greater_is_better
from ...recipe.schema import UNLABELED_SPLIT
from ...tasks.spec import IGNORE_INDEX
from ..base import Strategy

if TYPE_CHECKING:
    from datasets import Dataset

    from .cross_tokenizer import TeacherText

from .losses import (
    NOT_INPUTS,
    DistillCollator,
    distillation_loss,
    hidden_loss,
    model_inputs,
    stack_padded,
    teacher_forward,
)
from .options import DistillOptions

np = lazy("numpy")
torch = lazy("torch")
F = lazy("torch.nn.functional")
datasets = lazy("datasets")
models = lazy("nlp_transfer.strategies.distill.models")
xtok = lazy("nlp_transfer.strategies.distill.cross_tokenizer")

logger = logging.getLogger(__name__)

SPEED_BATCH_SIZE = 32
SPEED_REPEATS = 3
_CACHE_VERSION = "distill-teacher-v1"


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
        self._validation = (np.nan_to_num(stack_padded(logits, 0.0).float().numpy(), nan=0.0),
                            stack_padded(column_values(validation, "labels"), IGNORE_INDEX).numpy())
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
        from ...data.sampling import longest_first_order

        started = time.perf_counter()
        teacher = self.teacher.to(self.device).eval()
        order = longest_first_order(ds)
        inputs = ds.remove_columns([c for c in ds.column_names if c in NOT_INPUTS])
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
        return model(**model_inputs(batch)).logits

    def loss(self, model, batch, ctx):
        inputs = model_inputs(batch)
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
        inputs = rows.remove_columns([c for c in rows.column_names if c in NOT_INPUTS])
        return [{k: v.to(self.device) for k, v in pad([inputs[i] for i in range(s, min(s + SPEED_BATCH_SIZE, len(rows)))]).items()}
                for s in range(0, len(rows), SPEED_BATCH_SIZE)]


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
