"""``distill``'s recipe options: a torch-free dataclass, read by recipe validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from ...recipe.schema import MODEL, PATH_KIND, UNLABELED_SPLIT
from ..base import StrategyOptions


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
    teacher: str = field(default="", metadata={PATH_KIND: MODEL})
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
