"""Observers of the loop's evaluations: code above the loop (a hyperparameter search's pruner) watches a run's
validation scores and may ask the loop to stop, without an argument threaded through every stage.

    with observe_evaluations(lambda record: "pruned" if bad(record) else None):
        train(recipe)

The loop calls every observer after each evaluation with the record it logs (``step``, ``epoch``, ``evaluation``
(1, 2, ...), ``validation`` scores); an observer returns ``None`` to go on or a reason (a short string) to stop. The
loop then stops as early stopping does: the best weights restored, the run evaluated and exported, and the reason
kept in the loop's state and in ``metrics.json`` (``train.stopped_by``).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Optional

EvaluationObserver = Callable[[dict], Optional[str]]

_OBSERVERS: ContextVar[tuple[EvaluationObserver, ...]] = ContextVar("evaluation_observers", default=())


@contextmanager
def observe_evaluations(observer: EvaluationObserver) -> Iterator[None]:
    """Call ``observer`` after every evaluation of every loop run inside the block."""
    token = _OBSERVERS.set((*_OBSERVERS.get(), observer))
    try:
        yield
    finally:
        _OBSERVERS.reset(token)


def stop_reason(record: dict) -> str | None:
    """The first reason an observer gives to stop after this evaluation, or None."""
    for observer in _OBSERVERS.get():
        reason = observer(record)
        if reason:
            return reason
    return None
