"""Multi-task batches: every batch holds rows of one task; which task comes next is drawn by a scheme.

``proportional``: task k with probability n_k / sum(n) (n_k: its training batches per epoch);
``temperature``: n_k ** (1 / T), normalised (T = 1 is proportional, large T approaches uniform; T = 2 is the
usual choice in multilingual and multi-task training); ``round_robin``: the tasks in turn. An epoch is
sum(n) batches. Within a task, batches come from that task's own seeded length-grouped sampler; a task
whose batches run out before the epoch ends starts a fresh pass (over-sampling a small task is the point
of temperature sampling). Everything is seeded by ``seed + epoch``, so a resumed run sees the same batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

TASK_INDEX = "task_index"  # a batch's column: which task its rows belong to (the same for every row)


def task_probabilities(batches_per_task: list[int], scheme: str, temperature: float = 2.0) -> np.ndarray:
    """The probability of drawing each task's batch next (``round_robin``: the share of batches each task gets)."""
    sizes = np.asarray(batches_per_task, dtype=np.float64)
    if scheme == "proportional":
        weights = sizes
    elif scheme == "temperature":
        weights = sizes ** (1.0 / temperature)
    elif scheme == "round_robin":
        weights = np.ones_like(sizes)
    else:
        raise ValueError(f"train.task_sampling: got {scheme!r}; expected proportional, temperature or round_robin")
    return weights / weights.sum()


class MultiTaskBatchSampler:
    """Batches of global row indices (task k's rows sit at ``offsets[k]`` onward), one task per batch.

    Args:
        samplers: One batch sampler per task (with ``set_epoch`` and ``len``), yielding that task's row indices.
        scheme, temperature: How the next batch's task is drawn (see the module docstring).
        seed: Seeds the task draws; each epoch draws with ``seed + epoch``.
    """

    def __init__(self, samplers: list, scheme: str, temperature: float, seed: int):
        self.samplers, self.scheme, self.seed = samplers, scheme, seed
        self.sizes = [len(s) for s in samplers]
        self.offsets = np.concatenate([[0], np.cumsum([s.num_rows for s in samplers])[:-1]]).tolist()
        self.probabilities = task_probabilities(self.sizes, scheme, temperature)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def task_order(self) -> list[int]:
        """The task of each batch of the current epoch."""
        total = len(self)
        if self.scheme == "round_robin":
            return [i % len(self.sizes) for i in range(total)]
        rng = np.random.default_rng([self.seed, self.epoch])
        return rng.choice(len(self.sizes), size=total, p=self.probabilities).tolist()

    def __iter__(self):
        passes = [0] * len(self.samplers)
        streams = [self._task_pass(k, 0) for k in range(len(self.samplers))]
        for task in self.task_order():
            batch = next(streams[task], None)
            if batch is None:  # this task's pass is over: start another (its sampler reshuffles with a new seed)
                passes[task] += 1
                streams[task] = self._task_pass(task, passes[task])
                batch = next(streams[task])
            yield [self.offsets[task] + i for i in batch]

    def _task_pass(self, task: int, repeat: int):
        sampler = self.samplers[task]
        # distinct, reproducible orders per epoch and repeat, without touching the global RNG
        sampler.set_epoch(self.epoch * 1000 + repeat)
        return iter(list(sampler))

    def __len__(self) -> int:
        return sum(self.sizes)


class MultiTaskRows(torch.utils.data.Dataset):
    """The tasks' training rows end to end; each row carries its task's index."""

    def __init__(self, datasets: list):
        self.datasets = datasets
        self.offsets = np.concatenate([[0], np.cumsum([len(d) for d in datasets])]).tolist()

    def __len__(self) -> int:
        return self.offsets[-1]

    def _locate(self, index: int) -> tuple[int, int]:
        task = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return task, index - self.offsets[task]

    def __getitem__(self, index: int) -> dict:
        task, row = self._locate(index)
        return {**self.datasets[task][row], TASK_INDEX: task}

    def __getitems__(self, indices: list[int]) -> list[dict]:
        task, _ = self._locate(indices[0])
        rows = self.datasets[task][[self._locate(i)[1] for i in indices]]  # one columnar read for the batch
        count = len(indices)
        return [{**{k: v[j] for k, v in rows.items()}, TASK_INDEX: task} for j in range(count)]


class MultiTaskCollator:
    """Collates a batch with its task's own collator and adds ``task_index``; refuses a batch that mixes tasks."""

    def __init__(self, collators: list):
        self.collators = collators

    def __call__(self, rows: list[dict]) -> dict:
        tasks = {row[TASK_INDEX] for row in rows}
        if len(tasks) != 1:
            raise ValueError(f"a multi-task batch mixes tasks {sorted(tasks)}; each batch must hold one task's rows")
        task = tasks.pop()
        batch = self.collators[task]([{k: v for k, v in row.items() if k != TASK_INDEX} for row in rows])
        count = next(len(v) for v in batch.values() if isinstance(v, torch.Tensor))
        batch[TASK_INDEX] = torch.full((count,), task, dtype=torch.long)
        return batch


def multitask_loader(datasets: list, samplers: list, collators: list, *, scheme: str, temperature: float,
                     seed: int) -> DataLoader:
    """Training batches over every task: one task per batch, drawn by ``scheme``; ``batch_sampler.set_epoch`` reseeds."""
    sampler = MultiTaskBatchSampler(samplers, scheme, temperature, seed)
    return DataLoader(MultiTaskRows(datasets), batch_sampler=sampler, collate_fn=MultiTaskCollator(collators),
                      generator=torch.Generator())


def expected_batches(batches_per_task: list[int], scheme: str, temperature: float) -> list[float]:
    """Batches per epoch each task gets on average (for the log and the card)."""
    total = sum(batches_per_task)
    return [round(float(p) * total, 1) for p in task_probabilities(batches_per_task, scheme, temperature)]


def epochs_of_data(batches_per_task: list[int], scheme: str, temperature: float) -> list[float]:
    """How many passes over its own data each task gets in one epoch (over 1: a small task repeated)."""
    return [round(b / max(1, n), 2) for b, n in zip(expected_batches(batches_per_task, scheme, temperature),
                                                      batches_per_task)]
