"""``frozen``: feature extraction. The encoder never changes, so its features are computed
once, cached on disk, and the head trains on the cache for as many epochs as asked."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from datasets import Array2D, Dataset, DatasetDict, Features, Sequence, Value
from transformers import default_data_collator

from .. import cache
from ..data import batch_collator, row_lengths
from ..models import base_encoder, head_logits, head_modules, pooled_features, token_features
from ..tasks import IGNORE_INDEX, concat_rows
from .base import Strategy, StrategyOptions

logger = logging.getLogger(__name__)


@dataclass
class FrozenOptions(StrategyOptions):
    """``strategy.pooling``: ``cls`` (native head, plain transformers output) or ``mean``."""

    name: str = "frozen"
    pooling: Literal["cls", "mean"] = "cls"
    cache_features: bool = True

    def validate(self, recipe) -> list[str]:
        if recipe.task.type == "token-classification" and self.pooling != "cls":
            return [f"strategy.pooling: got {self.pooling!r}, but a token-classification head reads every token's own "
                    "features (nothing is pooled); remove strategy.pooling or set it to cls"]
        return []


class FrozenStrategy(Strategy):
    """Train only the task head on cached encoder features."""

    name = "frozen"
    Options = FrozenOptions

    def __init__(self, options, task):
        super().__init__(options, task)
        self.cache_hits: dict[str, bool] = {}

    def model_kwargs(self):
        return {"pooling": self.options.pooling}

    def prepare(self, model):
        model.requires_grad_(False)
        for module in head_modules(model):
            module.requires_grad_(True)
        return FeatureHead(model)

    def prepare_data(self, model, tokenizer, splits: DatasetDict, accelerator) -> DatasetDict:
        encoder_key = (cache.weights_fingerprint(base_encoder(model)), self.options.pooling, model.config.model_type)
        features = DatasetDict()
        for split, ds in splits.items():
            key = cache.cache_key(encoder_key, ds._fingerprint, self.task.type)
            build = lambda ds=ds: self._extract(model, tokenizer, ds, accelerator.device)  # noqa: E731
            if not self.options.cache_features:
                features[split], self.cache_hits[split] = build(), False
                continue
            with accelerator.main_process_first():
                features[split], self.cache_hits[split] = cache.cached("features", key, build)
        return features

    def collator(self, tokenizer):
        return pad_token_features if self.task.type == "token-classification" else default_data_collator

    def logits(self, model, batch):
        return model(features=batch["features"])

    @torch.inference_mode()
    def _extract(self, model, tokenizer, ds: Dataset, device, batch_size: int = 64) -> Dataset:
        """Pooled features for every row, computed in length order to keep padding tight."""
        model.eval()
        model.to(device)
        order = np.argsort(-row_lengths(ds), kind="stable")
        pad = batch_collator(tokenizer)
        out = None  # (rows, feature width); the width is known after the first batch (conv backbones have no hidden_size)
        inputs = ds.remove_columns([c for c in ("labels", "length") if c in ds.column_names])
        if self.task.type == "token-classification":
            return self._extract_tokens(model, ds, inputs, order, pad, device, batch_size)
        for start in range(0, len(ds), batch_size):
            rows = order[start:start + batch_size]
            batch = pad([inputs[int(i)] for i in rows])
            batch = {k: v.to(device) for k, v in batch.items()}
            features = pooled_features(model, batch, self.options.pooling).float().cpu().numpy()
            out = np.zeros((len(ds), features.shape[-1]), dtype=np.float32) if out is None else out
            out[rows] = features
        return Dataset.from_dict({"features": out, "labels": ds["labels"]})

    def _extract_tokens(self, model, ds, inputs, order, pad, device, batch_size) -> Dataset:
        """Every token's last hidden state, (row length, hidden) per row, stored without padding."""
        rows: list[np.ndarray | None] = [None] * len(ds)
        for start in range(0, len(ds), batch_size):
            batch_rows = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in pad([inputs[int(i)] for i in batch_rows]).items()}
            states = token_features(model, batch).float().cpu().numpy()
            for i, state, mask in zip(batch_rows, states, batch["attention_mask"].cpu().numpy()):
                rows[int(i)] = state[mask.astype(bool)]  # the row's own tokens, padding dropped
        features = Features({"features": Array2D((None, model.config.hidden_size), "float32"),
                             "labels": Sequence(Value("int64"))})
        return Dataset.from_dict({"features": rows, "labels": ds["labels"]}, features=features)


def pad_token_features(rows: list[dict]) -> dict:
    """A batch of per-token features (zeros past each row's end) and labels (``IGNORE_INDEX`` there)."""
    as_tensor = lambda key, dtype: [torch.as_tensor(np.asarray(r[key]), dtype=dtype).unsqueeze(0) for r in rows]  # noqa: E731
    return {"features": concat_rows(as_tensor("features", torch.float32), 0.0),
            "labels": concat_rows(as_tensor("labels", torch.long), IGNORE_INDEX)}


class FeatureHead(torch.nn.Module):
    """The part of a task model that trains under ``frozen``: cached features in, logits out.

    It holds the whole task model (so the head's weights are trained in place), but its
    forward only runs the head; the frozen encoder is never called during training.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return head_logits(self.model, features)
