"""The task-type protocol: everything that depends on what a head predicts lives behind it.

A ``TaskType`` (one registered object per recipe ``task.type``) owns its recipe rules, label
encoding, preprocessing, collator, Auto class, loss, logits -> predictions, metrics, evaluation
gathering, ``Predictor`` output and the wording of cards. Code outside ``tasks/`` asks the task
type; it never tests ``task.type`` itself.

A ``TaskSpec`` (``spec.py``) is one task of one run: the type plus the label maps found in the data.
Module level stays light (validating a recipe reads this); heavy libraries load on first use.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, ClassVar

from .._lazy import lazy
from ..data.checks import TEXT, CellColumns
from ..data.columns import column_values
from ..evaluation.metrics import (
    CLASSIFICATION_METRICS,
    SHIPPED_METRICS,
    MetricError,
    compute_shipped,
    numeric_arrays,
)
from .spec import IGNORE_INDEX, REGISTERED, TaskSpec

if TYPE_CHECKING:
    from ..recipe.schema import Recipe, TaskConfig

np = lazy("numpy")
torch = lazy("torch")
F = lazy("torch.nn.functional")

EXAMPLE_TEXT = "This was a pleasant surprise."
EXAMPLE_PAIR = ("A man is playing a guitar.", "Someone plays an instrument.")


class TaskType:
    """Base class: a single-label, sequence-level classifier; subclasses override what differs.

    Class attributes (traits other modules read instead of the type's name):
        name: The recipe ``task.type``.
        modality: What the model reads: ``text`` or ``image``.
        problem_type: transformers' ``config.problem_type`` (None: the head has one loss).
        per_token: Logits and labels per token position (batch, positions, classes).
        pools: A sequence-level text head that can read the first token or the mean (``model.pooling``).
        takes_unlabeled: Rows without labels (``data.files.unlabeled``) fit this type's batches.
        reads: Type-specific keys this type reads (``data.format`` conll, ``data.dir``...).
        input_cell: What one input cell holds (``text``, ``words`` or ``image``), for the cell checks.
        default_metrics: Reported when a recipe names none; the first picks the best model.
    """

    name: ClassVar[str]
    display_name: ClassVar[str]
    problem_type: ClassVar[str | None] = "single_label_classification"
    pipeline_tag: ClassVar[str] = "text-classification"
    modality: ClassVar[str] = "text"
    peft_auto_class: ClassVar[str | None] = "AutoPeftModelForSequenceClassification"
    per_token: ClassVar[bool] = False
    pools: ClassVar[bool] = True
    takes_unlabeled: ClassVar[bool] = True
    default_metrics: ClassVar[tuple[str, ...]] = ("accuracy", "f1")
    peft_task_type: ClassVar[str | None] = "SEQ_CLS"
    min_classes: ClassVar[int] = 2
    empty_label_means_none: ClassVar[bool] = False  # an empty label cell is a valid "no label" (multi-label), not missing data
    named_outputs: ClassVar[bool] = True  # each output is a named class (regression: a score)
    input_cell: ClassVar[str] = TEXT  # what one input cell holds: text, words (a list per row) or an image
    reads: ClassVar[frozenset[str]] = frozenset()  # keys only some types read (see ``_foreign_keys``)

    # ------------------------------------------------------------------ recipe
    def input_columns(self, task: TaskConfig) -> list[str]:
        """The columns the model reads."""
        return task.text_columns

    def allowed_metrics(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS

    def metric_problems(self, names) -> list[str]:
        """One line per metric name that cannot work for this type (names not shipped load from the Hub)."""
        allowed = self.allowed_metrics()
        return [f"metric '{name}' does not apply to task.type '{self.name}'; use one of: {', '.join(allowed)}"
                for name in names if name in SHIPPED_METRICS and name not in allowed]

    def validate(self, recipe: Recipe) -> list[str]:
        """Problems with the recipe's keys for this type (keys of other types, column counts...)."""
        return self._foreign_keys(recipe)

    def _foreign_keys(self, recipe: Recipe) -> list[str]:
        """Keys that only other task types read, when the recipe uses them."""
        data, task, problems = recipe.data, recipe.task, []
        used = {"data.format": "conll" if data.format == "conll" else None, "data.dir": data.dir,
                "data.tag_column": data.tag_column if data.tag_column != -1 else None,
                "task.label_all_subtokens": True if task.label_all_subtokens else None,
                "data.augment": "set" if data.augment is not None else None}
        for key, value in used.items():
            if value is not None and key not in self.reads:
                owners = [name for name, kind in REGISTERED.items() if key in kind.reads]
                problems.append(f"{key}: got {value!r}, which only task.type {' or '.join(owners)} reads; got task.type "
                                f"{self.name!r}. Remove {key} or set task.type={owners[0]}")
        return problems

    # -------------------------------------------------------------------- data
    def cell_columns(self, task: TaskConfig) -> CellColumns:
        """The columns whose cells must not be empty or mistyped: the inputs (holding ``input_cell``), and the label
        column (None: an empty label is a valid "no label")."""
        label = task.tags if self.per_token else task.label
        return CellColumns(self.input_columns(task), None if self.empty_label_means_none else label, self.input_cell)

    def encode_labels(self, splits, task: TaskConfig, data, names: list[str] | None = None):
        """Add a numeric ``labels`` column to every split; return ``(splits, TaskSpec)`` (labels from train)."""
        from .labels import encode_class_labels

        return encode_class_labels(splits, task, data, names, self)

    def cell_labels(self, value, task: TaskConfig) -> list:
        """The raw labels one label cell holds."""
        return [value]

    def encode_cell(self, value, to_id, num_labels: int, task: TaskConfig):
        """One label cell as the ``labels`` value (``to_id``: raw label -> class id)."""
        return to_id(value)

    def unlabeled_value(self, spec: TaskSpec):
        """The ``labels`` value of a row without a label (it shapes like a labelled row's)."""
        return IGNORE_INDEX

    def stratify_by(self, ds) -> list | None:
        """Per-row keys to stratify a sample of train by (None: a plain seeded sample)."""
        return column_values(ds, "labels")

    def load_processor(self, path: str, trust_remote_code: bool = False):
        """The tokenizer (image processor for image tasks) saved next to the model."""
        from ..models.build import load_tokenizer

        return load_tokenizer(path, trust_remote_code)

    def preprocess(self, splits, processor, recipe: Recipe, *, augment: bool = True, carry: tuple[str, ...] = ()):
        """What the model reads per split (token ids and ``length``); plus a report dict (empty here).

        ``carry``: raw columns kept beside the model inputs (a strategy reads them, e.g. a teacher with its own tokenizer).
        """
        from ..data.loaders import tokenize_splits

        return tokenize_splits(splits, processor, recipe.task.text_columns, recipe.model.max_length, carry), {}

    def tokenize_rows(self, tokenizer, batch: dict, columns: list[str], max_length: int) -> dict:
        """Model inputs and ``length`` for a batch of raw rows (``columns``: ``input_columns``), row order kept:
        how another tokenizer reads the same rows (distillation from a teacher that tokenizes differently)."""
        from ..data.loaders import tokenize_texts

        return dict(tokenize_texts(tokenizer, batch, columns, max_length))

    def align_targets(self, targets, other_rows, rows, tokenizer, columns: list[str]):
        """Per-row targets computed on ``tokenize_rows(other tokenizer)`` (``other_rows``), for the rows as
        ``tokenizer`` made them (``rows``). Sequence-level targets belong to the row: unchanged."""
        return targets

    def collator(self, processor):
        """How rows become a batch: dynamic padding."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(processor)

    # ------------------------------------------------------------------ models
    def auto_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def features(self, model, batch: dict, pooling: str):
        """What the head reads, per example (what ``frozen`` caches)."""
        from ..models.build import pooled_features

        return pooled_features(model, batch, pooling)

    # ------------------------------------------------------- loss and outputs
    def loss(self, logits, labels, spec: TaskSpec):
        """The task loss, the one transformers' heads use for ``problem_type``."""
        return F.cross_entropy(logits.float(), labels.long())

    def row_losses(self, logits, labels, spec: TaskSpec):
        """One loss per row (shape ``(rows,)``): the mean of the row's terms of ``loss``; 0 for a row without a label.

        Here the cross-entropy of the row's class (a row labelled ``IGNORE_INDEX`` has none)."""
        return F.cross_entropy(logits.float(), labels.long(), ignore_index=IGNORE_INDEX, reduction="none")

    def row_sizes(self, labels, spec: TaskSpec):
        """How many of ``loss``'s terms each row holds (float, shape ``(rows,)``): ``loss`` is the mean of
        ``row_losses`` weighted by these. Here 1 for a labelled row, 0 for a row labelled ``IGNORE_INDEX``."""
        return (labels != IGNORE_INDEX).float()

    def weighted_loss(self, logits, labels, weights, spec: TaskSpec):
        """``loss`` with a weight per row (``data.weight_column``, importance weights): every term of a row counts
        ``weight`` times, so all-equal weights give ``loss`` itself and a weight-0 row adds nothing."""
        terms = self.row_sizes(labels, spec) * weights.float()
        return (self.row_losses(logits, labels, spec) * terms).sum() / terms.sum().clamp(min=1e-12)

    def soft_loss(self, student, teacher, temperature: float):
        """Distillation: T^2 * KL(softmax(teacher/T) || softmax(student/T)), summed over classes, averaged over rows."""
        return F.kl_div(F.log_softmax(student / temperature, -1), F.log_softmax(teacher / temperature, -1),
                        log_target=True, reduction="batchmean") * temperature ** 2

    def distill_rows(self, student, teacher, labels, labeled):
        """Logits, teacher logits, labels and the labelled mask as one example per row (distillation)."""
        return student, teacher, labels, labeled

    def predictions(self, logits, spec: TaskSpec):
        """Class ids from logits (numpy)."""
        return logits.argmax(-1)

    def gather(self, accelerator, logits, labels):
        """Logits and labels of every process, for metrics."""
        return accelerator.gather_for_metrics((logits, labels))

    def compute_metrics(self, names: list[str], predictions, references, spec: TaskSpec) -> dict[str, float]:
        predictions, references = self.metric_arrays(*numeric_arrays(predictions, references), spec.num_labels)
        return compute_shipped(names, predictions, references, spec.num_labels, average=self.average)

    def metric_arrays(self, preds, refs, num_labels: int):
        """Predictions and references checked for this type's shape and values, as metric inputs.

        Raises:
            MetricError: Wrong rank, or class ids outside ``0..num_labels-1``.
        """
        if preds.ndim != 1:
            raise MetricError(f"task.type '{self.name}' expects 1-D predictions, got shape {preds.shape}; "
                              "post-process logits first (argmax for classes)")
        values = np.union1d(preds, refs)
        bad = values[(values < 0) | (values >= num_labels) | (values != np.round(values))]
        if bad.size:
            raise MetricError(f"predictions/references for task.type '{self.name}' contain {bad[:5].tolist()}; "
                              f"allowed: class ids 0..{num_labels - 1}")
        return preds.astype(np.int64), refs.astype(np.int64)

    def average(self, name: str, num_labels: int) -> str:
        """The ``average`` of f1/precision/recall named without one."""
        return "binary" if num_labels == 2 else "macro"

    def describe(self, logits, spec: TaskSpec) -> dict:
        """``Predictor`` output for one row of logits."""
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(probs.argmax())
        return {"label": spec.id2label[best], "score": float(probs[best])}

    def predict_logits(self, model, processor, inputs: list, *, batch_size: int, max_length: int, device, progress=None):
        """Logits of a loaded model (on ``device``) for raw inputs (texts or sentence pairs), in input order;
        ``progress(rows)``, when given, after each batch."""
        from ..models.forward import text_logits

        return text_logits(model, processor, inputs, batch_size=batch_size, max_length=max_length, device=device,
                           progress=progress)

    def prediction_inputs(self, ds, recipe: Recipe, split: str = "validation") -> list:
        """What ``Predictor`` takes for the rows of a split of the recipe's data (texts, or sentence pairs)."""
        columns = [column_values(ds, c) for c in recipe.task.text_columns]
        return list(zip(*columns)) if len(columns) == 2 else columns[0]

    def predictor(self, model, processor):
        """A callable ``(inputs, batch_size, progress)`` serving whole predictions (``progress(rows)`` as rows are done),
        when this type predicts through something other than logits."""
        return None

    # -------------------------------------------------------------------- card
    def phrase(self, spec: TaskSpec, recipe: Recipe) -> str:
        return f"{spec.num_labels}-class {_pair(recipe)}text classification"

    def intended_use(self, spec: TaskSpec) -> str:
        return f"sorting text into {', '.join(f'`{n}`' for n in spec.label_names)}"

    def card_labels(self, spec: TaskSpec) -> list[str]:
        return spec.label_names

    def example(self, recipe: Recipe) -> str:
        """The pipeline input of a card's usage code, as Python source."""
        if len(recipe.task.text_columns) == 2:
            return json.dumps(dict(zip(("text", "text_pair"), EXAMPLE_PAIR)))
        return json.dumps(EXAMPLE_TEXT)

    def example_args(self, recipe: Recipe) -> str:
        """The tokenizer arguments of a card's usage code, as Python source."""
        if len(recipe.task.text_columns) == 2:
            return ", ".join(json.dumps([t]) for t in EXAMPLE_PAIR)
        return json.dumps([EXAMPLE_TEXT])

    def pipeline_kwargs(self) -> str:
        return ""

    def decode_snippet(self, spec: TaskSpec) -> str:
        return "print([model.config.id2label[i] for i in logits.argmax(-1).tolist()])"

    def indexed(self, metric: str) -> bool:
        """Whether a score goes into the Hub metadata."""
        return True


def _pair(recipe) -> str:
    return "sentence-pair " if len(recipe.task.text_columns) == 2 else ""


def concat_rows(parts: list, pad_value: float):
    """Concatenate batches along rows; per-token batches of different lengths are padded first."""
    longest = max(p.shape[1] for p in parts) if parts[0].ndim >= 2 else 0
    if all(p.ndim < 2 or p.shape[1] == longest for p in parts):
        return torch.cat(parts)
    return torch.cat([F.pad(p, (0, 0) * (p.ndim - 2) + (0, longest - p.shape[1]), value=pad_value) for p in parts])
