"""Tokenisation and data loaders.

Everything goes through ``datasets`` so tokenization is cached by fingerprint; padding is dynamic (per batch) and
training batches group similar lengths to waste little compute on padding.
"""

from __future__ import annotations

import torch
from datasets import Dataset, DatasetDict
from torch.utils.data import DataLoader

from .columns import column_values
from .files import WEIGHTS
from .sampling import LengthGroupedBatchSampler, longest_first


def tokenize_splits(splits: DatasetDict, tokenizer, text_columns: list[str], max_length: int,
                    carry: tuple[str, ...] = ()) -> DatasetDict:
    """Token ids per split (no padding), plus ``length``; evaluation splits sorted long to short.

    Sorting evaluation rows by length makes padded batches tight; metrics do not depend on order.
    ``carry``: raw columns kept beside the token ids (a strategy reads them, e.g. a teacher with another tokenizer).
    """
    tokenized = DatasetDict()
    for split, ds in splits.items():
        drop = [c for c in ds.column_names if c not in ("labels", WEIGHTS) and c not in carry]
        out = ds.map(lambda batch: tokenize_texts(tokenizer, batch, text_columns, max_length), batched=True,
                     remove_columns=drop, desc=f"tokenize {split}")
        tokenized[split] = out if split == "train" else longest_first(out)
    return tokenized


def tokenize_texts(tokenizer, batch: dict, text_columns: list[str], max_length: int):
    """Token ids of a batch of rows (one text column, or two for sentence pairs), truncated, plus ``length``."""
    encoded = tokenizer(*[[str(t) for t in batch[c]] for c in text_columns], truncation=True, max_length=max_length)
    encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
    return encoded


def train_loader(ds: Dataset, batch_size: int, seed: int, group_by_length: bool, collator) -> DataLoader:
    """Training batches; groups by token length when the rows have one."""
    lengths = column_values(ds, "length") if (group_by_length and "length" in ds.column_names) else None
    sampler = LengthGroupedBatchSampler(lengths, len(ds), batch_size, seed)
    # Its own generator: starting a pass must not draw from the global RNG, or a resumed run (RNG restored
    # from the checkpoint, then a new pass started) would see different dropout masks than an uninterrupted one.
    return DataLoader(_model_columns(ds), batch_sampler=sampler, collate_fn=collator, generator=torch.Generator())


def eval_loader(ds: Dataset, batch_size: int, collator) -> DataLoader:
    """Evaluation batches in the split's order (already sorted by length)."""
    return DataLoader(_model_columns(ds), batch_size=batch_size, shuffle=False, collate_fn=collator)


def _model_columns(ds: Dataset) -> Dataset:
    return ds.remove_columns([c for c in ("length",) if c in ds.column_names])
