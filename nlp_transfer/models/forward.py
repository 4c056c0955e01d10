"""A loaded text model run over raw texts (or sentence pairs) in batches of similar length."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def text_logits(model, tokenizer, texts: list, *, batch_size: int, max_length: int, device,
                progress: Callable[[int], object] | None = None) -> np.ndarray:
    """Logits for texts (or sentence pairs), tokenized in one pass and run in batches of similar length on ``device``;
    ``progress(rows)``, when given, after each batch."""
    pairs = isinstance(texts[0], (tuple, list))
    columns = [[str(t) for t in col] for col in zip(*texts)] if pairs else [[str(t) for t in texts]]
    encoded = tokenizer(*columns, truncation=True, max_length=max_length)
    order = np.argsort([-len(ids) for ids in encoded["input_ids"]], kind="stable")
    out = None
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = tokenizer.pad([{key: encoded[key][i] for key in encoded} for i in rows], return_tensors="pt")
        logits = model(**{key: value.to(device, non_blocking=True) for key, value in batch.items()}).logits
        out = np.zeros((len(texts), logits.shape[-1]), dtype=np.float32) if out is None else out
        out[rows] = logits.float().cpu().numpy()
        if progress is not None:
            progress(len(rows))
    return out
