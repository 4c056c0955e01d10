"""Each task type's loss per row (``row_losses``, ``row_sizes``) and its weighted form (``weighted_loss``): the
per-row weights of ``data.weight_column`` and importance weights reach the type's own loss, never another's."""

import pytest
import torch
import torch.nn.functional as F

import nlp_transfer.tasks  # noqa: F401 (fills the registry)
from nlp_transfer.tasks.spec import IGNORE_INDEX, REGISTERED, TaskSpec


def _batch(task_type: str, rows: int = 6, seed: int = 0):
    """Logits and labels of ``rows`` rows shaped as ``task_type``'s head makes them, some without a target."""
    g = torch.Generator().manual_seed(seed)
    if task_type == "regression":
        return TaskSpec(task_type, {0: "score"}), torch.randn(rows, 1, generator=g), 3 * torch.randn(rows, generator=g)
    if task_type == "multi-label-classification":
        spec = TaskSpec(task_type, {0: "a", 1: "b", 2: "c", 3: "d"})
        return spec, torch.randn(rows, 4, generator=g), torch.randint(0, 2, (rows, 4), generator=g).float()
    if task_type == "token-classification":
        spec = TaskSpec(task_type, {0: "O", 1: "B-X", 2: "I-X"})
        labels = torch.randint(0, 3, (rows, 7), generator=g)
        for row in range(rows):  # a different number of tagged positions per row (padding, later word pieces)
            labels[row, row + 1:] = IGNORE_INDEX
        labels[0, 0] = IGNORE_INDEX  # a gap inside a row too
        return spec, torch.randn(rows, 7, 3, generator=g), labels
    spec = TaskSpec(task_type, {0: "x", 1: "y", 2: "z"})
    labels = torch.randint(0, 3, (rows,), generator=g)
    labels[1] = IGNORE_INDEX  # an unlabelled row (e.g. a target row) holds no term of the loss
    return spec, torch.randn(rows, 3, generator=g), labels


@pytest.mark.parametrize("task_type", sorted(REGISTERED))
def test_equal_weights_give_the_task_loss_and_the_rows_sum_to_it(task_type):
    spec, logits, labels = _batch(task_type)
    loss = spec.loss(logits, labels)
    for value in (1.0, 2.5):
        weights = torch.full((len(labels),), value)
        torch.testing.assert_close(spec.weighted_loss(logits, labels, weights), loss)
    kind = spec.kind
    rows, sizes = kind.row_losses(logits, labels, spec), kind.row_sizes(labels, spec)
    assert rows.shape == sizes.shape == (len(labels),)
    torch.testing.assert_close((rows * sizes).sum() / sizes.sum(), loss)  # loss: the size-weighted mean of the rows
    # a zero weight removes a row: the weighted loss is the task loss of the other rows
    weights = torch.ones(len(labels))
    weights[2] = 0.0
    keep = weights.bool()
    torch.testing.assert_close(spec.weighted_loss(logits, labels, weights), spec.loss(logits[keep], labels[keep]))


@pytest.mark.parametrize("task_type", sorted(REGISTERED))
def test_weights_scale_each_rows_terms(task_type):
    """Weight 3 on a row is the row three times over (integer weights = repeated rows)."""
    spec, logits, labels = _batch(task_type)
    weights = torch.tensor([3.0, 1.0, 1.0, 2.0, 1.0, 1.0])
    repeat = weights.long()
    expected = spec.loss(logits.repeat_interleave(repeat, 0), labels.repeat_interleave(repeat, 0))
    torch.testing.assert_close(spec.weighted_loss(logits, labels, weights), expected)


def test_each_types_row_loss_is_its_own():
    spec, logits, labels = _batch("regression")
    torch.testing.assert_close(spec.kind.row_losses(logits, labels, spec), (logits[:, 0] - labels) ** 2)
    spec, logits, labels = _batch("multi-label-classification")
    bce = -(labels * F.logsigmoid(logits) + (1 - labels) * F.logsigmoid(-logits))
    torch.testing.assert_close(spec.kind.row_losses(logits, labels, spec), bce.mean(1))
    spec, logits, labels = _batch("token-classification")
    rows = spec.kind.row_losses(logits, labels, spec)
    for row in range(len(labels)):
        tagged = labels[row] != IGNORE_INDEX
        expected = F.cross_entropy(logits[row][tagged], labels[row][tagged]) if tagged.any() else torch.tensor(0.0)
        torch.testing.assert_close(rows[row], expected)
    assert spec.kind.row_sizes(labels, spec).tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    spec, logits, labels = _batch("text-classification")
    rows = spec.kind.row_losses(logits, labels, spec)
    assert rows[1] == 0 and spec.kind.row_sizes(labels, spec)[1] == 0
    torch.testing.assert_close(rows[0], F.cross_entropy(logits[:1], labels[:1]))
