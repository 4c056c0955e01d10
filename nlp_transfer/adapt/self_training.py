"""Self-training on the target domain: further rounds of training on target rows labelled by the model itself.

After the recipe's training, each round (``adapt.self_training``):

1. predicts every target row with the model so far (the best of the last round);
2. keeps the ``keep`` share of them it is surest of, the same number per predicted class (``select_pseudo_labels``),
   and labels them with their predicted class;
3. trains the same model again, with a fresh optimizer and schedule for ``train.epochs``, on those rows and as many
   source rows (``round_train_split``), the best model chosen on the same rows as the first training.

The target's own labels are never read (the target split holds none). The rounds give the model labelled text of the
target domain, which alignment terms cannot: in a pilot on the Amazon reviews (11 pairs, one seed), the most
confident half of a source-trained model's target predictions were right 90-99 % of the time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

logger = logging.getLogger(__name__)


@dataclass
class PseudoLabels:
    """Target rows chosen for a round, with their predicted class and its probability."""

    rows: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    num_classes: int

    def summary(self) -> dict:
        """What metrics.json records of a round's pseudo-labels (no accuracy: the target has no labels to score them)."""
        counts = np.bincount(self.labels, minlength=self.num_classes)
        return {"pseudo_labelled_rows": int(len(self.rows)), "per_class": counts.tolist(),
                "mean_confidence": round(float(self.confidence.mean()), 4) if len(self.rows) else None,
                "lowest_confidence": round(float(self.confidence.min()), 4) if len(self.rows) else None}


def select_pseudo_labels(logits: torch.Tensor, keep: float) -> PseudoLabels:
    """The rows a round trains on: per predicted class, the ``keep * rows / classes`` most probable (all of that
    class's rows if fewer), in row order; ties keep row order."""
    probabilities = torch.softmax(logits.float(), dim=-1)
    confidence, predicted = (t.numpy() for t in probabilities.max(dim=-1))
    num_classes = logits.shape[-1]
    per_class = max(1, int(keep * len(logits) / num_classes))
    chosen = []
    for label in range(num_classes):
        rows = np.flatnonzero(predicted == label)
        chosen.append(rows[np.argsort(-confidence[rows], kind="stable")[:per_class]])
    rows = np.sort(np.concatenate(chosen))
    return PseudoLabels(rows, predicted[rows], confidence[rows], num_classes)


def round_train_split(source, target, pseudo: PseudoLabels, seed: int):
    """A round's training rows: the pseudo-labelled target rows and as many source rows (all, if fewer), a seeded sample.

    A ``weights`` column (instance weights, ``data.weight_column``) gives the target rows weight 1, the mean source weight.
    """
    import datasets

    labelled = target.select(pseudo.rows.tolist()).remove_columns("labels").add_column("labels", pseudo.labels.tolist())
    if "weights" in source.column_names:
        labelled = labelled.add_column("weights", [1.0] * len(labelled))
    labelled = labelled.select_columns(source.column_names).cast(source.features)
    sample = source.shuffle(seed=seed).select(range(min(len(source), len(labelled))))
    return datasets.concatenate_datasets([sample, labelled])


def run_rounds(config, *, predict_target, fit_round, source, target, seed: int):
    """``config.rounds`` self-training rounds after the first training.

    Args:
        config: The recipe's ``adapt.self_training``.
        predict_target: ``() -> logits`` of every target row by the model as it is now (the best weights of the last
            training), in the target split's order.
        fit_round: ``(train split, round number) -> LoopResult``: the loop again on the same model.
        source, target: The prepared source train split and the (unlabelled) target split.

    Returns:
        Every round's ``LoopResult`` (the last one's model is the run's) and one summary per round for metrics.json.
    """
    results, summaries = [], []
    for number in range(1, config.rounds + 1):
        pseudo = select_pseudo_labels(predict_target(), config.keep)
        summary = pseudo.summary()
        empty = [c for c, n in enumerate(summary["per_class"]) if n == 0]
        if empty:
            logger.warning("Self-training round %d: the model predicts no target row as class(es) %s; the round's "
                           "pseudo-labels hold only the other classes", number, empty)
        train = round_train_split(source, target, pseudo, seed + number)
        source_rows = len(train) - len(pseudo.rows)
        logger.info("Self-training round %d: %d pseudo-labelled target rows (%s per class, lowest confidence %.3f) and "
                    "%d source rows", number, len(pseudo.rows), summary["per_class"], summary["lowest_confidence"] or 0.0,
                    source_rows)
        result = fit_round(train, number)
        results.append(result)
        summaries.append({"round": number, **summary, "source_rows": source_rows,
                          "steps": result.state.global_step, "seconds": round(result.state.train_seconds, 2),
                          "best_step": result.state.best_step, "validation": result.best_metrics})
    return results, summaries
