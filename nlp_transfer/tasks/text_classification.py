"""``text-classification``: one class per text or sentence pair (binary or multi-class, int or string labels)."""

from __future__ import annotations

from .base import TaskType


class TextClassification(TaskType):
    """Single-label classification of a text (``task.text``) or a sentence pair (a list of two columns)."""

    name = "text-classification"
    display_name = "Text Classification"

    def validate(self, recipe) -> list[str]:
        problems = super().validate(recipe)
        if not 1 <= len(recipe.task.text_columns) <= 2:
            problems.append(f"task.text: got {recipe.task.text!r}; expected one column name, or a list of two for "
                            "sentence pairs")
        return problems
