"""One encoder, several task models: each task keeps its own transformers task model (its head, and its pooler
where the family has one), and every one of them holds the same encoder modules.

Keeping a whole task model per task means each exports as a plain folder that its Auto class and ``pipeline()``
load, and every strategy hook, head and pooling choice works per task unchanged. The tie is by module, not by
copying: a step through any task updates the one encoder every task reads.
"""

from __future__ import annotations

import torch

from ..errors import ModelError
from ..models.build import base_encoder
from .sampling import TASK_INDEX

# Parts of a backbone that stay per task: the pooler feeds only a sequence head (and a token model has none).
PER_TASK_PARTS = ("pooler",)


def tie_encoders(models: dict[str, torch.nn.Module]) -> list[str]:
    """Make every task model read the first one's encoder modules; return the names of the tied parts.

    Raises:
        ModelError: A task model's backbone differs in architecture or size from the first one's.
    """
    names = list(models)
    shared = base_encoder(models[names[0]])
    tied = [name for name, _ in shared.named_children() if name not in PER_TASK_PARTS]
    for task in names[1:]:
        encoder = base_encoder(models[task])
        for part in tied:
            mine = getattr(encoder, part, None)
            theirs = getattr(shared, part)
            if mine is None or _shapes(mine) != _shapes(theirs):
                raise ModelError(f"tasks.{task}: its backbone's {part!r} differs from tasks.{names[0]}'s "
                                 f"({type(encoder).__name__} vs {type(shared).__name__}); every task must use model.name's encoder")
            setattr(encoder, part, theirs)
    return tied


def _shapes(module: torch.nn.Module) -> list[tuple]:
    return [(name, tuple(p.shape)) for name, p in module.named_parameters()]


class MultiTaskModule(torch.nn.Module):
    """The tasks' (prepared) models side by side; ``forward(task_index=..., **inputs)`` runs the batch's task.

    Parameters shared by several tasks appear once in ``parameters()`` (named after the first task that holds them).
    """

    def __init__(self, models: dict[str, torch.nn.Module]):
        super().__init__()
        self.names = list(models)
        self.tasks = torch.nn.ModuleDict(models)

    def task(self, index: int) -> torch.nn.Module:
        return self.tasks[self.names[index]]

    def forward(self, **inputs):
        index = inputs.pop(TASK_INDEX)
        return self.task(int(index.reshape(-1)[0]))(**inputs)


class TaskView:
    """Calls the multi-task module (through any training wrapper, e.g. DDP) for one task, so that a task's own
    strategy hooks (``logits``, ``loss``) run on it as on a single-task model."""

    def __init__(self, model, index: int):
        self.model, self.index = model, index

    def __call__(self, **inputs):
        some = next(v for v in inputs.values() if isinstance(v, torch.Tensor))
        return self.model(**inputs, **{TASK_INDEX: torch.full((1,), self.index, dtype=torch.long, device=some.device)})
