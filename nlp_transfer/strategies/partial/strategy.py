"""``partial``: train the top ``train_top_layers`` encoder layers, the backbone's top (pooler, final norm)
and the new head; everything below stays frozen.

The frozen bottom never changes, so what it hands the first trained layer is computed once per
example and cached on disk (keyed by the weights, the data and the cut), and each epoch runs only
the top layers from the cache (``strategy.cache_bottom``). The frozen bottom runs in eval mode
(no dropout) on both paths, so cached and uncached training compute the same thing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..._lazy import lazy
from ...data import cache
from ...errors import ModelError
from ..base import Strategy
from ..layerwise import LayerwiseOptions, layerwise_param_groups

torch = lazy("torch")
datasets = lazy("datasets")

logger = logging.getLogger(__name__)

BOTTOM = "bottom"  # the column of cached bottom outputs (partial_layers.BOTTOM, kept here so importing stays torch-free)

@dataclass
class PartialOptions(LayerwiseOptions):
    """``strategy.train_top_layers``: how many of the encoder's last layers train (with the backbone's top and
    the new head); ``strategy.cache_bottom``: compute the frozen bottom once and cache it on disk;
    ``layer_decay`` / ``lr_divisor``: discriminative rates over the trained groups (see ``full``)."""

    name: str = "partial"
    train_top_layers: int = 2
    cache_bottom: bool = True

    fixed_inputs = True  # the cache holds one bottom output per training input
    summary = ("the top {train_top_layers} encoder layers, the backbone's top and the new task head trained; "
               "the layers below and the embeddings stayed frozen")
    description = "top-layers fine-tune"
    train_defaults = {"lr": 1e-4}
    head_lr_factor = 10.0

    def validate(self, recipe) -> list[str]:
        problems = super().validate(recipe)
        if self.train_top_layers < 1:
            problems.append(f"strategy.train_top_layers: got {self.train_top_layers}; expected how many of the encoder's "
                            "last layers train, at least 1 (strategy frozen trains none)")
        return problems


class PartialStrategy(Strategy):
    """Train the encoder's top layers (and the head) on top of a frozen, cached bottom."""

    name = "partial"
    Options = PartialOptions
    first_token_training = True

    def __init__(self, options, task):
        super().__init__(options, task)
        self.cache_hits: dict[str, bool] = {}
        self.uses_cache = options.cache_bottom

    def prepare(self, model):
        from ...models.build import encoder_layers, layer_groups

        layers = encoder_layers(model)
        depth = len(layers) if layers is not None else 0
        wanted = self.options.train_top_layers
        if wanted > depth:
            raise ModelError(f"strategy.train_top_layers: got {wanted}, but {type(model).__name__} has {depth} encoder "
                             f"layer groups; pick 1 to {depth} (or strategy full to train every layer)")
        cut = depth - wanted
        model.requires_grad_(False)
        for group in layer_groups(model):
            if group.depth > cut:  # layer.<cut> and above, the backbone's top, the head
                for param in group.params:
                    param.requires_grad_(True)
        from .layers import PartialModel

        return PartialModel(model, cut)

    def param_groups(self, model, lr, head_lr, weight_decay):
        return layerwise_param_groups(model, lr, head_lr, weight_decay, self.options.layer_factor())

    # ------------------------------------------------------------------- data
    def prepare_data(self, model, processor, splits, accelerator):
        if not self.uses_cache:
            return splits
        from ...models.build import base_encoder
        from .layers import PartialModel

        wrapper = PartialModel(model, self._cut(model))

        key = (cache.weights_fingerprint(base_encoder(model)), wrapper.cut, model.config.model_type)
        out = datasets.DatasetDict()
        for split, ds in splits.items():
            build = lambda ds=ds: self._with_bottom(wrapper, processor, ds, accelerator.device)  # noqa: E731
            with accelerator.main_process_first():
                out[split], self.cache_hits[split] = cache.cached("partial", cache.cache_key(key, ds._fingerprint), build)
        if not self._cache_matches(wrapper, processor, out["validation"], accelerator.device):
            logger.warning("strategy partial: %s computes differently from a cached bottom; training without the cache",
                           type(model).__name__)
            self.uses_cache = False
            return splits
        return out

    def _cut(self, model) -> int:
        from ...models.build import encoder_layers

        return len(encoder_layers(model)) - self.options.train_top_layers

    def _with_bottom(self, wrapper, processor, ds, device, batch_size: int = 64):
        """``ds`` with a ``bottom`` column: the frozen bottom's output per row (its own tokens only)."""
        from ...data.sampling import longest_first_order

        order = longest_first_order(ds)
        pad = self.task.kind.collator(processor)
        inputs = ds.remove_columns([c for c in ("labels", "length") if c in ds.column_names])
        rows: list = [None] * len(ds)
        mask = None
        with torch.inference_mode():
            wrapper.eval().to(device)
            for start in range(0, len(ds), batch_size):
                picked = order[start:start + batch_size]
                batch = {k: v.to(device) for k, v in pad([inputs[int(i)] for i in picked]).items()}
                hidden = wrapper.bottom_outputs(batch).float().cpu().numpy()
                mask = batch["attention_mask"].cpu().numpy().astype(bool) if "attention_mask" in batch else None
                for j, i in enumerate(picked):
                    rows[int(i)] = hidden[j][mask[j]] if mask is not None else hidden[j]
        shape = rows[0].shape if rows else (0,)
        kind = {2: datasets.Array2D, 3: datasets.Array3D, 4: datasets.Array4D}[len(shape)]
        shape = (None, *shape[1:]) if mask is not None else shape
        column = datasets.Dataset.from_dict({BOTTOM: rows}, features=datasets.Features({BOTTOM: kind(shape, "float32")}))
        return datasets.concatenate_datasets([ds.flatten_indices(), column], axis=1)

    def _cache_matches(self, wrapper, processor, ds, device, rows: int = 8) -> bool:
        """Whether logits from the cached bottom equal the whole model's on a few rows (eval mode)."""
        batch = self.collator(processor)([ds[i] for i in range(min(rows, len(ds)))])
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.inference_mode():
            wrapper.eval()
            inputs = {k: v for k, v in batch.items() if k not in ("labels", "length", BOTTOM)}
            cached, whole = wrapper(bottom=batch[BOTTOM], **inputs).logits, wrapper(**inputs).logits
        if "attention_mask" in batch and cached.ndim == 3:  # per-token logits: compare real tokens only
            real = batch["attention_mask"].bool()
            cached, whole = cached[real], whole[real]
        return bool(torch.allclose(cached.float(), whole.float(), atol=1e-4, rtol=1e-4))

    def collator(self, processor):
        base = self.task.kind.collator(processor)
        from .layers import BottomCollator

        return BottomCollator(base) if self.uses_cache else base

    def logits(self, model, batch):
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "length")}
        return model(**inputs).logits

    def top_level_metrics(self) -> dict:
        return {"partial_cache_hits": dict(self.cache_hits)} if self.options.cache_bottom else {}
