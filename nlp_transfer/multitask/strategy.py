"""Several tasks through one strategy: one instance of the recipe's strategy per task, on task models that share
their encoder (``multitask/model.py``).

Each task's instance keeps its own hooks (what trains, its data, collator, loss), so ``full``, ``lora`` (the
adapters live in the shared encoder; each task's head trains in full), ``frozen`` (cached features per task),
``partial`` and ``gradual`` (their schedules set the shared layers identically for every task) work unchanged.
This wrapper merges what the loop sees: one optimizer over every parameter once, one stream of single-task
batches, each batch's loss from its own task's instance times the task's weight.
"""

from __future__ import annotations

from ..strategies.base import Strategy
from .model import MultiTaskModule, TaskView
from .sampling import TASK_INDEX, MultiTaskCollator, multitask_loader


class MultiTaskStrategy(Strategy):
    """Dispatches each hook to the strategy instance of the batch's task.

    Args:
        inners: One strategy instance per task (same options, each with its task's ``TaskSpec``), in task order.
        names: The task names, in the same order.
        weights: Each task's loss weight.
        sampling: ``(scheme, temperature)`` of ``train.task_sampling`` / ``train.task_temperature``.
    """

    def __init__(self, inners: list[Strategy], names: list[str], weights: list[float], sampling: tuple[str, float]):
        super().__init__(inners[0].options, inners[0].task)
        self.inners, self.names, self.weights, self.sampling = inners, names, weights, sampling
        self.name = inners[0].name
        # what trains changes from batch to batch (each batch reaches one task's head): a multi-process wrapper must
        # expect parameters without a gradient in a step, as for a schedule that freezes and unfreezes
        self.changes_trainable = True
        self.batches_per_task: list[int] = []

    # ------------------------------------------------------------------ model
    def prepare(self, model):
        return MultiTaskModule({name: inner.prepare(model.task(k)) for k, (name, inner) in enumerate(zip(self.names, self.inners))})

    def param_groups(self, model, lr, head_lr, weight_decay):
        """Every task's groups; a parameter several tasks share (the encoder) sits in the first group that has it."""
        groups, seen = [], set()
        for k, inner in enumerate(self.inners):
            for group in inner.param_groups(model.task(k), lr, head_lr, weight_decay):
                params = [p for p in group["params"] if id(p) not in seen]
                seen.update(id(p) for p in params)
                if params:
                    groups.append({**group, "params": params})
        return groups

    def lr_factors(self, groups, steps_per_epoch, total_steps):
        return self.inners[0].lr_factors(groups, steps_per_epoch, total_steps)  # by layer depth, the same for every task

    def on_epoch(self, model, ctx):
        for k, inner in enumerate(self.inners):
            inner.on_epoch(model.task(k), ctx)

    def on_step(self, model, ctx):
        for k, inner in enumerate(self.inners):
            inner.on_step(model.task(k), ctx)

    # ------------------------------------------------------------------- data
    def prepare_data(self, model, processor, splits, accelerator):
        """``splits``: one DatasetDict per task name; returns the same, each prepared by its task's instance."""
        return {name: inner.prepare_data(model.task(k), processor, splits[name], accelerator)
                for k, (name, inner) in enumerate(zip(self.names, self.inners))}

    def collator(self, processor):
        return MultiTaskCollator([inner.collator(processor) for inner in self.inners])

    def train_batches(self, train, *, batch_size, seed, group_by_length, collator):
        """``train``: one training Dataset per task name. Each task's batches come from its own instance's loader."""
        loaders = [inner.train_batches(train[name], batch_size=batch_size, seed=seed + k, group_by_length=group_by_length,
                                       collator=sub) for k, (name, inner, sub) in enumerate(zip(self.names, self.inners,
                                                                                                  collator.collators))]
        self.batches_per_task = [len(loader) for loader in loaders]
        scheme, temperature = self.sampling
        return multitask_loader([loader.dataset for loader in loaders], [loader.batch_sampler for loader in loaders],
                                collator.collators, scheme=scheme, temperature=temperature, seed=seed)

    # ------------------------------------------------------------------- loss
    def logits(self, model, batch):
        index, rest = _split_task(batch)
        return self.inners[index].logits(TaskView(model, index), rest)

    def loss(self, model, batch, ctx):
        index, rest = _split_task(batch)
        loss, extra = self.inners[index].loss(TaskView(model, index), rest, ctx)
        return self.weights[index] * loss, extra

    def evaluation_extras(self, model) -> dict:
        return {key: value for k, inner in enumerate(self.inners) for key, value in inner.evaluation_extras(model.task(k)).items()}

    def top_level_metrics(self) -> dict:
        return {}  # per task: the runner asks each instance


def _split_task(batch: dict) -> tuple[int, dict]:
    rest = dict(batch)
    index = rest.pop(TASK_INDEX)
    return int(index.reshape(-1)[0]), rest
