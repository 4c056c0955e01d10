"""Distillation's arithmetic: the soft/hard loss, the hidden-state loss, the teacher's forward pass and the
collator that carries the teacher's cached outputs in every batch."""

from __future__ import annotations

from ..._lazy import lazy
from ...tasks import concat_rows, get_task_type
from ...tasks.spec import WORD_IDS

np = lazy("numpy")
torch = lazy("torch")
F = lazy("torch.nn.functional")
models = lazy("nlp_transfer.strategies.distill.models")

# Batch columns that are not model inputs.
NOT_INPUTS = ("labels", "length", "labeled", "teacher_logits", "teacher_hidden", WORD_IDS)



# ---------------------------------------------------------------------- losses
def distillation_loss(student_logits, teacher_logits, labels, labeled, task_type: str, *,
                      temperature: float = 2.0, alpha: float = 0.5):
    """``alpha * hard + (1 - alpha) * soft``; ``hard`` is averaged over labelled rows only.

    The task type gives both terms (``TaskType.loss`` and ``soft_loss``): for single-label heads,
    hard = CE and soft = T^2 * KL(softmax(teacher/T) || softmax(student/T)) (Hinton et al.; T^2 keeps
    gradients comparable across T); multi-label: BCE and the per-label Bernoulli KL; regression: MSE
    to the labels and MSE to the teacher. Token tasks count every tagged word as one example.

    Teacher rows that are NaN (per-token targets of words a teacher with another tokenizer did not
    see) add no soft term; the soft average is over the rows that have one.

    Args:
        labeled: Boolean per row; rows without labels (``data.files.unlabeled``) add only soft terms.

    Returns:
        The loss and its parts (``loss_hard``, ``loss_soft``) for logging.
    """
    kind = get_task_type(task_type)
    s, t = student_logits.float(), teacher_logits.float().to(student_logits.device)
    s, t, labels, labeled = kind.distill_rows(s, t, labels, labeled.to(s.device))
    known = torch.isfinite(t).all(-1)  # NaN: a word a cross-tokenizer teacher did not see (no soft target)
    if bool(known.all()):
        soft = kind.soft_loss(s, t, temperature)
    else:
        soft = kind.soft_loss(s[known], t[known], temperature) if known.any() else s.sum() * 0.0
    hard = kind.loss(s[labeled], labels[labeled], None) if labeled.any() else s.new_zeros(())
    return alpha * hard + (1 - alpha) * soft, {"loss_hard": hard.detach(), "loss_soft": soft.detach()}


def hidden_loss(student_states, teacher_states):
    """MSE between projected student and teacher first-token states, (batch, mapped layers, width)."""
    return F.mse_loss(student_states.float(), teacher_states.float().to(student_states.device))


def teacher_forward(teacher, inputs: dict, hidden_map: list[int] | None):
    """Teacher logits and (with ``hidden_map``) the first-token states of the mapped layers."""
    if hidden_map is None:
        return teacher(**inputs).logits, None
    out = teacher(**inputs, output_hidden_states=True)
    return out.logits, models.first_token_states(out, hidden_map, teacher)


# --------------------------------------------------------------------- helpers
class DistillCollator:
    """Dynamic padding for the token columns (stacking for images); teacher outputs and the ``labeled`` mask are stacked."""

    def __init__(self, pad):
        self.pad = pad

    def __call__(self, features: list[dict]) -> dict:
        extras = [k for k in ("teacher_logits", "teacher_hidden", "labeled") if k in features[0]]
        batch = self.pad([{k: v for k, v in f.items() if k not in extras} for f in features])
        for key in extras:
            dtype = torch.bool if key == "labeled" else torch.float32
            batch[key] = stack_padded([f[key] for f in features], 0.0).to(dtype)
        return batch


def stack_padded(rows: list, pad_value: float):
    """Rows as one tensor; per-token rows of different lengths are padded at the end."""
    tensors = [torch.as_tensor(np.asarray(r)).unsqueeze(0) for r in rows]
    return concat_rows(tensors, pad_value)


def model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in NOT_INPUTS}
