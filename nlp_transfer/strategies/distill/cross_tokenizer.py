"""Cross-tokenizer distillation: the teacher reads the raw text through its own tokenizer.

When teacher and student tokenize differently (all-mpnet-base-v2 into MiniLM: other ids, other
special tokens), they cannot share token ids. The runner then keeps the raw input columns beside
the student's token ids (``Strategy.raw_columns``); ``TeacherText`` tokenizes them the teacher's
way, row for row (``TaskType.tokenize_rows``), so the teacher runs once over them and its outputs
are cached per row. The task type moves the targets onto the student's rows
(``TaskType.align_targets``):

- sequence tasks: the targets belong to the row (logits; first-token hidden states) and need
  no alignment.
- token classification: the targets are aligned per word. The teacher's logits at the first
  piece of each word become that word's target, and every student piece of the word gets it
  (the loss reads the tagged pieces, exactly as the labels do). A word the teacher did not see
  (cut by its max length) has no target (NaN): it adds only the label loss.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from datasets import Dataset
from datasets.fingerprint import Hasher

from ...errors import ModelError
from ...models.build import load_tokenizer
from ...tasks import TaskType
from .models import same_tokenizer

logger = logging.getLogger(__name__)

_DEFAULT_MAX_LENGTH = 512


@dataclass
class TeacherText:
    """How the teacher tokenizes the raw inputs of the student's rows.

    Attributes:
        tokenizer: The teacher's tokenizer.
        kind: The task type (how rows are tokenized and targets aligned).
        columns: The raw columns it reads (the text column(s), or the word-list column of token tasks).
        max_length: The teacher's truncation length.
    """

    tokenizer: Any
    kind: TaskType
    columns: list[str]
    max_length: int

    def cache_part(self) -> tuple:
        """What the teacher's cached outputs depend on beyond its weights and the rows."""
        return ("cross-tokenizer", Hasher.hash(sorted(self.tokenizer.get_vocab().items())), type(self.tokenizer).__name__,
                self.max_length, tuple(self.columns))

    def inputs(self, rows: Dataset) -> Dataset:
        """The teacher's token ids for ``rows`` (same order), with ``length`` (and what ``align`` needs)."""
        return rows.select_columns(self.columns).map(
            lambda batch: self.kind.tokenize_rows(self.tokenizer, batch, self.columns, self.max_length), batched=True,
            remove_columns=self.columns, desc="tokenize for the teacher")

    def align(self, teacher_rows: list | np.ndarray, teacher_inputs: Dataset, rows: Dataset, student_tokenizer):
        """Teacher outputs per row (on ``teacher_inputs``) for the student's ``rows`` (``input_ids`` plus the raw columns)."""
        return self.kind.align_targets(teacher_rows, teacher_inputs, rows, student_tokenizer, self.columns)


def teacher_text(student_tokenizer, teacher_path: str, teacher_name: str, kind: TaskType, columns: list[str],
                 max_length: int | None) -> TeacherText | None:
    """A ``TeacherText`` when the teacher tokenizes differently from the student, else None (same token ids).

    Args:
        columns: The raw columns the model reads (``kind.input_columns`` of the recipe's task).

    Raises:
        ModelError: The teacher folder has no tokenizer, or a slow one where targets are aligned per word.
    """
    if same_tokenizer(student_tokenizer, teacher_path):
        return None
    try:
        tokenizer = load_tokenizer(teacher_path)
    except ModelError:
        raise ModelError(f"strategy.teacher: the student's tokenizer ({student_tokenizer.name_or_path}) differs from the "
                         f"teacher's, and {teacher_name!r} has no tokenizer to read the text with; save the teacher's "
                         "tokenizer in its folder (nlp-transfer outputs have it) or distill into a student with the "
                         "teacher's tokenizer") from None
    if kind.per_token and not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"strategy.teacher: {teacher_name!r} has a slow tokenizer ({type(tokenizer).__name__}); aligning "
                         "its outputs to the student's words needs word ids, which only fast tokenizers give")
    length = max_length or _trained_max_length(teacher_path) or min(tokenizer.model_max_length, _DEFAULT_MAX_LENGTH)
    logger.info("Teacher and student tokenize differently (%s vs %s): each reads the raw text its own way; the "
                "teacher's max length is %d", type(tokenizer).__name__, type(student_tokenizer).__name__, length)
    return TeacherText(tokenizer, kind, list(columns), length)


def _trained_max_length(teacher_path: str) -> int | None:
    """``model.max_length`` of the recipe that trained the teacher (an nlp-transfer output), if it says."""
    recipe = Path(teacher_path) / "recipe.yaml"
    if not recipe.is_file():
        return None
    try:
        return int(yaml.safe_load(recipe.read_text())["model"]["max_length"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None
