"""``frozen``: feature extraction. The encoder never changes, so its features are computed
once, cached on disk, and the head trains on the cache for as many epochs as asked."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from .._lazy import lazy
from ..data import cache
from ..data.columns import column_values
from ..tasks import concat_rows
from ..tasks.spec import IGNORE_INDEX
from .base import Strategy, StrategyOptions

np = lazy("numpy")
torch = lazy("torch")
datasets = lazy("datasets")
tqdm_auto = lazy("tqdm.auto")

logger = logging.getLogger(__name__)


@dataclass
class FrozenOptions(StrategyOptions):
    """``strategy.cache_features``: keep the computed features on disk for later runs.

    What a sequence head reads (and so what is cached) is ``model.pooling``.
    """

    name: str = "frozen"
    cache_features: bool = True

    trains_encoder = False
    fixed_inputs = True
    description = "frozen-encoder fine-tune"
    # Only a fresh head trains, on fixed features: it takes a high learning rate and many cheap epochs.
    train_defaults = {"lr": 1e-2, "epochs": 20.0, "weight_decay": 0.0}

    def card_summary(self, recipe, metrics) -> str:
        # token heads read every token's features, image heads their backbone's own
        pooled = f"{recipe.model.pooling}-pooled " if recipe.model.pooling else ""
        return f"the encoder stayed frozen; only the task head trained, on cached {pooled}encoder features"


class FrozenStrategy(Strategy):
    """Train only the task head on cached encoder features."""

    name = "frozen"
    Options = FrozenOptions

    def __init__(self, options, task):
        super().__init__(options, task)
        self.cache_hits: dict[str, bool] = {}
        self.feature_seconds: dict[str, float] = {}  # the one-off feature pass per split (0 on a cache hit)
        self.pooling = "cls"  # until prepare reads it from the model (model.pooling built its head)

    def prepare(self, model):
        from ..models.build import FeatureHead, head_modules, model_pooling

        self.pooling = model_pooling(model)
        model.requires_grad_(False)
        for module in head_modules(model):
            module.requires_grad_(True)
        return FeatureHead(model)

    def param_groups(self, model, lr, head_lr, weight_decay):
        return super().param_groups(model, lr, lr, weight_decay)  # only the head trains: one rate, train.lr

    def prepare_data(self, model, processor, splits, accelerator):
        from ..models.build import base_encoder

        encoder_key = (cache.weights_fingerprint(base_encoder(model)), self.pooling, model.config.model_type)
        features = datasets.DatasetDict()
        for split, ds in splits.items():
            # keyed by the model inputs' content, not the split's labels: tasks on the same text (the tasks of a
            # multi-task run, or another labelling of it) share one feature pass
            inputs = ds.remove_columns([c for c in ("labels",) if c in ds.column_names])
            key = cache.cache_key(encoder_key, cache.rows_fingerprint(inputs), self.task.kind.per_token)
            build = lambda inputs=inputs, split=split: self._timed_extract(model, processor, inputs, accelerator, split)  # noqa: E731
            if not self.options.cache_features:
                extracted, self.cache_hits[split] = build(), False
            else:
                with accelerator.main_process_first():
                    extracted, self.cache_hits[split] = cache.cached("features", key, build)
            features[split] = self._with_labels(extracted, column_values(ds, "labels"))
        return features

    def collator(self, processor):
        from transformers import default_data_collator

        return pad_token_features if self.task.kind.per_token else default_data_collator

    def logits(self, model, batch):
        return model(features=batch["features"])

    def top_level_metrics(self) -> dict:
        return {"feature_cache_hits": dict(self.cache_hits),
                "feature_pass_seconds": {s: round(self.feature_seconds.get(s, 0.0), 2) for s in self.cache_hits}}

    def _timed_extract(self, model, processor, ds, accelerator, split: str):
        started = time.perf_counter()
        out = self._extract(model, processor, ds, accelerator.device,
                            progress=f"features {split}" if accelerator.is_local_main_process else None)
        self.feature_seconds[split] = time.perf_counter() - started
        logger.info("Feature pass over %s (%d rows): %.1f s", split, len(ds), self.feature_seconds[split])
        return out

    def _extract(self, model, processor, ds, device, batch_size: int = 64, progress: str | None = None):
        """Features for every row of ``ds`` (model inputs only; pooled, or per token), in length order to keep padding tight.
        A pooled feature that is the first token's state needs the last layer at that position alone (``first_token``)."""
        from ..data.sampling import longest_first_order
        from ..models.first_token import first_token_last_layer

        with torch.inference_mode(), first_token_last_layer(model, not self.task.kind.per_token):
            model.eval()
            model.to(device)
            order = longest_first_order(ds)
            pad = self.task.kind.collator(processor)
            model_inputs = ds.remove_columns([c for c in ("labels", "length") if c in ds.column_names])
            rows: list = [None] * len(ds)
            for start in tqdm_auto.tqdm(range(0, len(ds), batch_size), desc=progress or "features", disable=progress is None):
                batch_rows = order[start:start + batch_size]
                batch = {k: v.to(device) for k, v in pad([model_inputs[int(i)] for i in batch_rows]).items()}
                features = self.task.kind.features(model, batch, self.pooling).float().cpu().numpy()
                masks = batch["attention_mask"].cpu().numpy().astype(bool) if self.task.kind.per_token else None
                for j, i in enumerate(batch_rows):  # per-token rows keep their own tokens, padding dropped
                    rows[int(i)] = features[j][masks[j]] if masks is not None else features[j]
        if self.task.kind.per_token:
            features = datasets.Features({"features": datasets.Array2D((None, model.config.hidden_size), "float32")})
            return datasets.Dataset.from_dict({"features": rows}, features=features)
        return datasets.Dataset.from_dict({"features": np.stack(rows)})

    def _with_labels(self, extracted, labels):
        """The cached features of a split with this task's labels beside them."""
        if self.task.kind.per_token:
            features = datasets.Features({"features": extracted.features["features"],
                                          "labels": datasets.Sequence(datasets.Value("int64"))})
            return datasets.Dataset.from_dict({"features": column_values(extracted, "features"), "labels": labels}, features=features)
        return extracted.add_column("labels", labels)


def pad_token_features(rows: list[dict]) -> dict:
    """A batch of per-token features (zeros past each row's end) and labels (``IGNORE_INDEX`` there)."""
    as_tensor = lambda key, dtype: [torch.as_tensor(np.asarray(r[key]), dtype=dtype).unsqueeze(0) for r in rows]  # noqa: E731
    return {"features": concat_rows(as_tensor("features", torch.float32), 0.0),
            "labels": concat_rows(as_tensor("labels", torch.long), IGNORE_INDEX)}
