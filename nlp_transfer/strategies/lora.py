"""``lora``: low-rank adapters (peft) on the attention projections; the new task head trains in full.

A pretrained pooler (BERT's, ALBERT's) is part of the head but not new: it gets adapters too, so
about half a percent of a MiniLM's weights train at r=8 instead of over one percent.

The output root holds the adapter (``adapter_config.json``, ``adapter_model.safetensors``,
tokenizer, the head's label maps in ``task_config.json``), loadable with ``PeftModel`` /
``AutoPeftModelForSequenceClassification`` on the base model given those label maps (peft builds the
base model from the base's own config and reads no other); with ``merge`` on, ``merged/`` holds the
adapter folded into the backbone, a plain transformers model that ``pipeline()`` loads without peft.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .._lazy import lazy
from ..errors import ModelError
from ..models.families import model_family
from ..models.files import ADAPTER_WEIGHTS, MERGED, TASK_CONFIG
from .base import Strategy, StrategyOptions

torch = lazy("torch")
peft = lazy("peft")


@dataclass
class LoraOptions(StrategyOptions):
    """``strategy`` keys of ``lora``.

    ``r``: adapter rank; ``alpha``: scale numerator (scale = alpha / r, or alpha / sqrt(r) with
    ``use_rslora``); ``dropout``: on the adapter input; ``target_modules``: linear layer names
    to adapt (null: the family's attention projections); ``bias``: which biases train;
    ``use_dora``: weight-decomposed LoRA; ``merge``: also export the merged model in ``merged/``;
    ``train_top_layers``: adapters only on the encoder's last N layers (peft's ``layers_to_transform``;
    the pretrained pooler then gets none and stays frozen), null: on every layer.
    """

    name: str = "lora"
    adaptable = True  # trains the encoder on the fly: an ``adapt`` section may align its features
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1
    target_modules: list[str] | None = None
    bias: Literal["none", "all", "lora_only"] = "none"
    use_rslora: bool = False
    use_dora: bool = False
    merge: bool = True
    train_top_layers: int | None = None

    push_choices = ("both", "adapter", "merged")
    summary = ("rank-{r} LoRA adapters (alpha {alpha}) on the {targets} layers and the new task head (in full) trained; "
               "the backbone's own weights stayed frozen")
    description = "LoRA adapter"
    train_defaults = {"lr": 1e-3}
    head_lr_factor = 5.0
    # peft's Auto classes rebuild the base model's native head: with mean pooling the adapter would load
    # into the wrong head (it still can, through nlp_transfer.load_model and merged/, when asked for)
    pooling_default = "cls"

    def card_summary(self, recipe, metrics) -> str:
        targets = (metrics.get(self.name) or {}).get("target_modules") or self.target_modules or ["attention"]
        return self.summary.format(r=self.r, alpha=self.alpha, targets=", ".join(f"`{t}`" for t in targets))

    def validate(self, recipe) -> list[str]:
        problems = []
        if recipe.model.from_scratch:
            problems.append("model.from_scratch: a LoRA adapter is saved without its base weights, and random base weights "
                            "cannot be reloaded; train the from-scratch baseline with strategy full (or frozen)")
        if self.r < 1:
            problems.append(f"strategy.r: got {self.r}; expected a positive integer rank, e.g. 8")
        if self.alpha <= 0:
            problems.append(f"strategy.alpha: got {self.alpha}; expected a positive number, e.g. 16 (twice r is usual)")
        if not 0 <= self.dropout < 1:
            problems.append(f"strategy.dropout: got {self.dropout}; expected a probability in [0, 1), e.g. 0.1")
        if self.target_modules is not None and (not self.target_modules or not all(t.strip() for t in self.target_modules)):
            problems.append(f"strategy.target_modules: got {self.target_modules!r}; expected a non-empty list of linear "
                            "layer names, e.g. [query, value], or null for the backbone family's default")
        if self.train_top_layers is not None and self.train_top_layers < 1:
            problems.append(f"strategy.train_top_layers: got {self.train_top_layers}; expected how many of the encoder's "
                            "last layers get adapters, at least 1, or null for all of them")
        return problems


class LoraStrategy(Strategy):
    """Train low-rank adapters on the backbone's attention projections (and pretrained pooler) plus the new task head."""

    name = "lora"
    Options = LoraOptions
    first_token_training = True

    def __init__(self, options, task):
        super().__init__(options, task)
        self.peft_model = None

    def prepare(self, model):
        _check_has_attention(model)
        targets = list(self.options.target_modules or default_target_modules(model))
        _check_targets(model, targets)
        layers = _top_layers(model, self.options.train_top_layers)
        if layers is None:
            targets += pretrained_pooler_layers(model)
        alpha = self.options.alpha
        config = peft.LoraConfig(
            task_type=self.task.kind.peft_task_type, r=self.options.r,
            lora_alpha=int(alpha) if float(alpha).is_integer() else alpha,
            lora_dropout=self.options.dropout, target_modules=targets, bias=self.options.bias,
            use_rslora=self.options.use_rslora, use_dora=self.options.use_dora,
            **(layers or {}),
            # The head is new: it trains in full and ships with the adapter.
            modules_to_save=new_head_module_names(model),
        )
        self.peft_model = peft.get_peft_model(model, config)
        _freeze_wrapped_layers(self.peft_model, self.options.bias)
        # peft adds its own guesses at a head's name to the list, whether the model has them or not: "classifier" and
        # "score" (appended in place, duplicates kept, before 0.22), and "pre_classifier" too from 0.22 on. What trains
        # and ships in full is what it wrapped: the saved adapter_config.json and the run's metrics list exactly that.
        config.modules_to_save = saved_module_names(self.peft_model)
        return self.peft_model

    def export(self, model, processor, out_dir: Path) -> None:
        """The adapter at ``out_dir`` and, with ``merge`` on, the merged model in ``out_dir/merged``."""
        from ..models.build import save_model

        peft_model = model if isinstance(model, peft.PeftModel) else self.peft_model
        if peft_model is None:
            raise ModelError("lora export: the model was not prepared by this strategy (call prepare first)")
        # Embeddings are never adapted here; "auto" would look the base model up on the Hub.
        peft_model.save_pretrained(str(out_dir), save_embedding_layers=False)
        # The adapter does not carry the head's label maps; transformers reads a config.json next to
        # adapter_config.json as "base weights are here", so they go under another name.
        peft_model.get_base_model().config.to_json_file(str(out_dir / TASK_CONFIG))
        processor.save_pretrained(out_dir)
        if self.options.merge:
            # Merge a copy: the trained model must stay unmerged for the reload check to mean something.
            merged = copy.deepcopy(peft_model).merge_and_unload()
            (out_dir / MERGED).mkdir()
            save_model(merged, processor, out_dir / MERGED)

    def model_folders(self, out_dir: Path) -> list[Path]:
        return [out_dir, out_dir / MERGED] if self.options.merge else [out_dir]

    def export_metrics(self, out_dir: Path) -> dict:
        config = self.peft_model.peft_config["default"] if self.peft_model is not None else None
        return {
            "adapter_bytes": (out_dir / ADAPTER_WEIGHTS).stat().st_size,
            "target_modules": sorted(config.target_modules) if config else None,
            "modules_to_save": saved_module_names(self.peft_model) if config else None,
            "merged_dir": MERGED if self.options.merge else None,
        }


def _freeze_wrapped_layers(peft_model, bias: str) -> None:
    """The pretrained weights inside adapted layers stay frozen. peft leaves a layer it newly wraps trainable
    when the model already holds adapters elsewhere (a multi-task run: the shared encoder was adapted through
    the first task's model, and the next task's own pooler is wrapped after that)."""
    for name, param in peft_model.named_parameters():
        if ".base_layer." in name and (name.endswith(".weight") or bias == "none"):
            param.requires_grad_(False)


def _top_layers(model, count: int | None) -> dict | None:
    """peft's ``layers_to_transform`` and ``layers_pattern`` for adapters on the last ``count`` encoder layers."""
    if count is None:
        return None
    from ..models.build import encoder_layers_at

    found = encoder_layers_at(model)
    depth = len(found[1]) if found else 0
    if count > depth:
        raise ModelError(f"strategy.train_top_layers: got {count}, but {type(model).__name__} has {depth} encoder layers; "
                         f"pick 1 to {depth}, or null for adapters on every layer")
    return {"layers_to_transform": list(range(depth - count, depth)), "layers_pattern": found[0].rsplit(".", 1)[-1]}


def default_target_modules(model) -> list[str]:
    """The attention projections LoRA adapts by default for this backbone family (the families table's
    ``lora_targets``, else peft's own table).

    Raises:
        ModelError: The family has no known default; the message lists the model's linear layers.
    """
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING

    family = model.config.model_type
    own = model_family(model)
    targets = (own.lora_targets if own else ()) or TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(family)
    if not targets:
        raise ModelError(f"strategy.target_modules: no default for model type {family!r}; set it to some of the model's "
                         f"linear layers ({', '.join(linear_module_names(model))}), e.g. strategy.target_modules=[query,value]")
    return list(targets)


def linear_module_names(model) -> list[str]:
    """Leaf names of the model's linear layers, deduplicated (what ``target_modules`` may name)."""
    return sorted({name.rsplit(".", 1)[-1] for name, _ in _linear_modules(model)})


def _linear_modules(model) -> list:
    """Linear layers, and layers that already carry LoRA adapters (a multi-task run's shared encoder, adapted
    through the first task's model: the next task's adapters are those same ones)."""
    from peft.tuners.lora import LoraLayer
    from transformers.pytorch_utils import Conv1D

    return [(name, m) for name, m in model.named_modules() if isinstance(m, (torch.nn.Linear, Conv1D, LoraLayer))]


def new_head_module_names(model) -> list[str]:
    """Qualified names of the head's new modules with weights (e.g. ``classifier``; not a pretrained pooler)."""
    from ..models.build import new_head_modules

    names = {id(module): name for name, module in model.named_modules()}
    return [names[id(m)] for m in new_head_modules(model) if id(m) in names and any(True for _ in m.parameters())]


def saved_module_names(peft_model) -> list[str]:
    """Qualified names (in the base model) of the modules that train in full and are saved with the adapter: those
    peft wrapped for ``modules_to_save`` (the new head's), not the names it guessed that match no module."""
    base = peft_model.get_base_model()
    return sorted(name for name, module in base.named_modules() if isinstance(module, peft.utils.ModulesToSaveWrapper))


def pretrained_pooler_layers(model) -> list[str]:
    """Qualified names of the linear layers of the backbone's pretrained pooler (e.g. ``bert.pooler.dense``)."""
    from ..models.build import pretrained_pooler

    pooler = pretrained_pooler(model)
    if pooler is None:
        return []
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and any(module is m for m in pooler.modules())]


def _check_targets(model, targets: list[str]) -> None:
    """peft matches a name to a module whose name is it or ends with ``.name``; each must match a linear layer."""
    linear = [name for name, _ in _linear_modules(model)]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in linear)]
    if missing:
        raise ModelError(f"strategy.target_modules: {', '.join(missing)} match no linear layer of this "
                         f"{model.config.model_type} model; its linear layers are: {', '.join(linear_module_names(model))}. "
                         "Set strategy.target_modules to some of these, e.g. strategy.target_modules=[query,value], "
                         "or null for the family default")


def _check_has_attention(model) -> None:
    """LoRA adapts attention projections; convolutional backbones have none."""
    own = model_family(model)
    if own is not None and not own.attention:
        family = model.config.model_type
        raise ModelError(f"strategy.name: lora adapts attention projections, and {family!r} is a convolutional backbone "
                         "without any; use strategy full, frozen or distill with this model, or lora with an attention "
                         "backbone (vit, deit, beit, dinov2, ...)")
