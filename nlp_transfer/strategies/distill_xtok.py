"""Cross-tokenizer distillation: the teacher reads the raw text through its own tokenizer.

When teacher and student tokenize differently (all-mpnet-base-v2 into MiniLM: other ids, other
special tokens), they cannot share token ids. The runner then keeps the raw text columns beside
the student's token ids (``Strategy.raw_columns``); ``TeacherText`` tokenizes that text the
teacher's way, row for row, so the teacher runs once over it and its outputs are cached per row:

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

from ..errors import ModelError
from ..models import load_tokenizer
from .distill_models import same_tokenizer

logger = logging.getLogger(__name__)

WORD_IDS = "teacher_word_ids"  # per teacher piece: the word it belongs to (-1: a special token)
NO_WORD = -1
_DEFAULT_MAX_LENGTH = 512


@dataclass
class TeacherText:
    """How the teacher tokenizes the raw text of the student's rows.

    Attributes:
        tokenizer: The teacher's tokenizer.
        columns: The raw columns it reads (the text column(s), or the word-list column of token tasks).
        token_task: Whether targets are per word (token classification).
        max_length: The teacher's truncation length.
    """

    tokenizer: Any
    columns: list[str]
    token_task: bool
    max_length: int

    def cache_part(self) -> tuple:
        """What the teacher's cached outputs depend on beyond its weights and the rows."""
        return ("cross-tokenizer", Hasher.hash(sorted(self.tokenizer.get_vocab().items())), type(self.tokenizer).__name__,
                self.max_length, tuple(self.columns))

    def inputs(self, rows: Dataset) -> Dataset:
        """The teacher's token ids for ``rows`` (same order), with ``length`` and, for token tasks, word ids."""
        def tokenize(batch):
            if self.token_task:
                encoded = self.tokenizer([[str(w) for w in words] for words in batch[self.columns[0]]],
                                         is_split_into_words=True, truncation=True, max_length=self.max_length)
                encoded[WORD_IDS] = [[NO_WORD if w is None else w for w in encoded.word_ids(i)]
                                     for i in range(len(encoded["input_ids"]))]
            else:
                texts = [[str(t) for t in batch[c]] for c in self.columns]
                encoded = self.tokenizer(*texts, truncation=True, max_length=self.max_length)
            encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
            return dict(encoded)

        return rows.select_columns(self.columns).map(tokenize, batched=True, remove_columns=self.columns,
                                                     desc="tokenize for the teacher")

    def align(self, teacher_rows: list[np.ndarray], teacher_inputs: Dataset, rows: Dataset, student_tokenizer) -> list[np.ndarray]:
        """Per-token teacher logits moved from the teacher's pieces to the student's, through the words.

        Args:
            teacher_rows: Per row, the teacher's logits at each of its real positions, (positions, labels).
            teacher_inputs: ``inputs(rows)`` (holds the teacher's word ids).
            rows: The student's rows: ``input_ids`` plus the raw word lists.
            student_tokenizer: The tokenizer that made the student's ``input_ids``.

        Returns:
            Per row, (student positions, labels): the word's teacher logits on each of its pieces,
            NaN on special tokens and on words the teacher did not see.
        """
        aligned = []
        for logits, teacher_words, (words, student_ids) in zip(
                teacher_rows, teacher_inputs[WORD_IDS], zip(rows[self.columns[0]], rows["input_ids"])):
            per_word = np.full((len(words), logits.shape[-1]), np.nan, dtype=np.float32)
            for position in reversed(range(len(teacher_words))):  # reversed: the first piece of a word wins
                if teacher_words[position] != NO_WORD:
                    per_word[teacher_words[position]] = logits[position]
            student_words = _student_word_ids(student_tokenizer, words, student_ids)
            row = np.full((len(student_ids), logits.shape[-1]), np.nan, dtype=np.float32)
            known = [i for i, w in enumerate(student_words) if w is not None]
            row[known] = per_word[[student_words[i] for i in known]]
            aligned.append(row)
        return aligned


def teacher_text(student_tokenizer, teacher_path: str, teacher_name: str, task, max_length: int | None) -> TeacherText | None:
    """A ``TeacherText`` when the teacher tokenizes differently from the student, else None (same token ids).

    Raises:
        ModelError: The teacher folder has no tokenizer.
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
    token_task = task.type == "token-classification"
    if token_task and not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"strategy.teacher: {teacher_name!r} has a slow tokenizer ({type(tokenizer).__name__}); aligning "
                         "its outputs to the student's words needs word ids, which only fast tokenizers give")
    length = max_length or _trained_max_length(teacher_path) or min(tokenizer.model_max_length, _DEFAULT_MAX_LENGTH)
    logger.info("Teacher and student tokenize differently (%s vs %s): each reads the raw text its own way; the "
                "teacher's max length is %d", type(tokenizer).__name__, type(student_tokenizer).__name__, length)
    return TeacherText(tokenizer, list(task.input_columns), token_task, length)


def _trained_max_length(teacher_path: str) -> int | None:
    """``model.max_length`` of the recipe that trained the teacher (an nlp-transfer output), if it says."""
    recipe = Path(teacher_path) / "recipe.yaml"
    if not recipe.is_file():
        return None
    try:
        return int(yaml.safe_load(recipe.read_text())["model"]["max_length"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def _student_word_ids(tokenizer, words: list[str], input_ids: list[int]) -> list[int | None]:
    """The word of each student piece, by tokenizing the words again exactly as the student's rows were."""
    encoded = tokenizer([str(w) for w in words], is_split_into_words=True, truncation=True, max_length=len(input_ids))
    if encoded["input_ids"] != list(input_ids):
        raise ModelError(f"cross-tokenizer distillation: tokenizing the words {words[:8]} again gave other token ids than "
                         "the student's rows; the student tokenizer must be deterministic")
    return encoded.word_ids()
