"""Domain adaptation around any adaptable strategy: a wrapper over its hooks, not a strategy of its own.

A recipe's ``adapt`` section (and ``data.weight_column``) combines with the strategy it names (``full``,
``lora``, ``gradual``: options with ``adaptable``). ``AdaptedStrategy`` keeps that strategy's decisions
(what trains, its parameter groups and schedules, its export) and changes only what adaptation needs:

- ``prepare``: dann adds a domain classifier beside the model (``AdaptedModel``); it trains but is never exported.
- ``prepare_data``: keeps the target rows, computes importance weights (``adapt.instance_weights``) from the
  frozen encoder's features (cached on disk), and sets aside the rows the per-evaluation domain numbers use.
- ``train_batches``: with an alignment method, source and target rows in every batch at ``adapt.target_ratio``
  (``adapt.batches``); instance weighting alone trains on source batches only (a target row has no label and,
  without an alignment term, nothing to contribute to the loss).
- ``loss``: the (weighted) task loss on the source rows plus ``adapt.weight`` x the adaptation term: alignment of
  the pooled features of the two domains (dann, mmd, coral), or mcc on the target rows' logits; target rows carry
  no label and the task loss never sees them.
- ``evaluation_extras``: per evaluation, the alignment loss, the domain classifier's accuracy and a proxy
  A-distance on held-out source-validation and target features. Model selection stays on source validation
  unless the recipe gives labelled target rows (``adapt.target_validation``, see ``adapt.selection``).
"""

from __future__ import annotations

import logging

from .._lazy import lazy
from ..data import cache
from ..recipe.schema import TARGET_SPLIT
from ..strategies.base import StepContext, Strategy
from . import alignment_weight

torch = lazy("torch")
datasets = lazy("datasets")
losses = lazy("nlp_transfer.adapt.losses")
weights_lib = lazy("nlp_transfer.adapt.weights")

logger = logging.getLogger(__name__)

WEIGHTS = "weights"  # per-row weight of the task loss (data.weight_column, or importance weights)
DOMAIN = "domain"  # 0: source row, 1: target row
_NOT_INPUTS = ("labels", "length", WEIGHTS, DOMAIN)
_CACHE_VERSION = "adapt-features-v1"


def _always_one(step: int) -> float:
    return 1.0


def build_adapted_model(model, width: int, hidden: int):
    """The trained module plus a domain classifier (dann); ``model`` stays what is exported."""

    class AdaptedModel(torch.nn.Module):
        """The strategy's model and a domain classifier; forward is the model's own."""

        def __init__(self):
            super().__init__()
            self.model = model
            self.domain_classifier = losses.DomainClassifier(width, hidden)

        def forward(self, *args, **kwargs):
            return self.model(*args, **kwargs)

    return AdaptedModel()


def _inner_model(model):
    return model.model if hasattr(model, "domain_classifier") else model


class AdaptedStrategy(Strategy):
    """Wraps ``inner`` (an adaptable strategy) with domain adaptation and instance weighting.

    Args:
        inner: The recipe's strategy; every hook not changed here is its own.
        adapt: The recipe's ``adapt`` section, or None (``data.weight_column`` alone).
    """

    def __init__(self, inner: Strategy, adapt):
        super().__init__(inner.options, inner.task)
        self.inner, self.adapt = inner, adapt
        self.name = inner.name
        self.changes_trainable = inner.changes_trainable
        self.method = adapt.method if adapt is not None else None
        self.weight = alignment_weight(self.method, adapt.weight if adapt is not None else None)
        self.target = None
        self.eval_rows = None
        self.last_extras: dict = {}
        self.weight_summary: dict = {}
        self.pooling = "cls"  # what the head reads (the aligned features); set from the model in ``prepare``

    # ------------------------------------------------------------------ model
    def build_model(self, build):
        return self.inner.build_model(build)

    def raw_columns(self, task, processor):
        return self.inner.raw_columns(task, processor)

    def prepare(self, model):
        from ..models.build import model_pooling

        self.pooling = model_pooling(model)
        trained = self.inner.prepare(model)
        if self.method != "dann":
            return trained
        config = _task_model(trained).config
        width = getattr(config, "hidden_size", None) or getattr(config, "dim")
        return build_adapted_model(trained, width, self.adapt.domain_hidden)

    def param_groups(self, model, lr, head_lr, weight_decay):
        groups = self.inner.param_groups(_inner_model(model), lr, head_lr, weight_decay)
        if hasattr(model, "domain_classifier"):  # a new head: it learns at the head's rate
            groups.append({"params": list(model.domain_classifier.parameters()), "lr": head_lr, "weight_decay": weight_decay})
        return groups

    def lr_factors(self, groups, steps_per_epoch, total_steps):
        extra = 1 if self.method == "dann" else 0
        factors = self.inner.lr_factors(groups[:len(groups) - extra], steps_per_epoch, total_steps)
        return None if factors is None else list(factors) + [_always_one] * extra

    def on_epoch(self, model, ctx):
        self.inner.on_epoch(_inner_model(model), ctx)

    def on_step(self, model, ctx):
        self.inner.on_step(_inner_model(model), ctx)

    # ------------------------------------------------------------------- data
    def prepare_data(self, model, processor, splits, accelerator):
        splits = self.inner.prepare_data(model, processor, splits, accelerator)
        if self.adapt is None:
            return splits
        target = splits[TARGET_SPLIT]
        collator = self.collator(processor)
        if self.adapt.instance_weights == "domain_classifier":
            splits["train"] = self._importance_weighted(model, splits["train"], target, collator, accelerator)
        n = self.adapt.eval_rows
        self.eval_rows = [_batches(ds.select(range(min(n, len(ds)))), collator) for ds in (splits["validation"], target)]
        self.target = target
        return splits

    def _importance_weighted(self, model, train, target, collator, accelerator):
        """Train rows with ``weights`` p_target/p_source from a cross-fitted domain classifier on the untrained
        encoder's features (``nlp_transfer.adapt.weights``: flattened when the domains barely overlap, clipped, mean 1)."""
        task_model = _task_model(model)
        key = cache.cache_key(_CACHE_VERSION, cache.weights_fingerprint(task_model), train._fingerprint, target._fingerprint,
                              self.pooling)
        device = accelerator.device

        def build():
            features = [_features(task_model, _batches(ds, collator), self.pooling, device) for ds in (train, target)]
            return datasets.Dataset.from_dict({"source": [features[0].tolist()], "target": [features[1].tolist()]})

        entry, hit = cache.cached("adapt-features", key, build)
        source_features = torch.tensor(entry[0]["source"])
        target_features = torch.tensor(entry[0]["target"])
        estimate = weights_lib.estimate_importance_weights(source_features, target_features, self.adapt.weight_clip,
                                                           self.adapt.weight_exponent)
        weights = estimate.weights
        self.weight_summary = {**estimate.summary(), "features_from_cache": hit}
        logger.info("Importance weights (cross-fitted domain classifier): %s", self.weight_summary)
        if estimate.exponent_chosen and estimate.exponent < 1:
            summary = self.weight_summary
            logger.warning("adapt.instance_weights: the domain classifier tells the domains apart with out-of-fold "
                           "accuracy %.3f; the exact ratio p_target/p_source would leave an effective sample of %.0f%% of "
                           "the %d source rows, so the weights follow ratio ** %.3g (effective sample %.0f%%). Set "
                           "adapt.weight_exponent (1: the exact ratio) to choose", summary["domain_accuracy_out_of_fold"],
                           100 * summary["exact_ratio_effective_share"], summary["rows"], estimate.exponent,
                           100 * summary["effective_sample_share"])
        if WEIGHTS in train.column_names:  # data.weight_column too: the two multiply
            weights = weights * torch.tensor(train[WEIGHTS], dtype=torch.float64)
            train = train.remove_columns(WEIGHTS)
        return train.add_column(WEIGHTS, weights.float().tolist())

    def collator(self, processor):
        return self.inner.collator(processor)

    def train_batches(self, train, *, batch_size, seed, group_by_length, collator):
        if self.method is None:  # data.weight_column or instance weights alone: the source rows, as the strategy batches them
            return self.inner.train_batches(train, batch_size=batch_size, seed=seed, group_by_length=group_by_length,
                                            collator=collator)
        from .batches import MixedBatchSampler

        source, target = train, self.target
        if WEIGHTS in source.column_names and WEIGHTS not in target.column_names:
            target = target.add_column(WEIGHTS, [0.0] * len(target))
        source = source.add_column(DOMAIN, [0] * len(source))
        target = target.add_column(DOMAIN, [1] * len(target)).cast(source.features)
        rows = datasets.concatenate_datasets([source, target]).remove_columns([c for c in ("length",) if c in source.column_names])
        sampler = MixedBatchSampler(len(source), len(target), batch_size, self.adapt.target_ratio, seed)
        return torch.utils.data.DataLoader(rows, batch_sampler=sampler, collate_fn=collator, generator=torch.Generator())

    # ------------------------------------------------------------------- loss
    def logits(self, model, batch):
        return self.inner.logits(_inner_model(model), {k: v for k, v in batch.items() if k not in (WEIGHTS, DOMAIN)})

    def loss(self, model, batch, ctx: StepContext):
        inner = _inner_model(model)
        if self.method is None:
            logits = self.logits(model, batch)
            return self._task_loss(logits, batch), {}
        inputs = {k: v for k, v in batch.items() if k not in _NOT_INPUTS}
        task_model = _task_model(inner)
        from ..models.build import head_logits, pooled_features

        features = pooled_features(task_model, inputs, self.pooling)
        logits = head_logits(task_model, features)
        is_target = batch[DOMAIN].bool()
        task_loss = self._task_loss(logits, batch)
        alignment, extra = self._alignment(model, features[~is_target], features[is_target], ctx, logits[is_target])
        extra.update({"task_loss": task_loss.item(), "alignment_loss": alignment.item()})
        return task_loss + self.weight * alignment, extra

    def _task_loss(self, logits, batch):
        """The task type's loss over the labelled (source) rows; with weights, its weighted form (a weight-0 row adds
        nothing). Target rows carry no label: they are left out here, whatever a task type's loss makes of one."""
        labels, weights = batch["labels"], batch.get(WEIGHTS)
        if DOMAIN in batch:
            source = ~batch[DOMAIN].bool()
            logits, labels = logits[source], labels[source]
            weights = None if weights is None else weights[source]
        if weights is None:
            return self.task.loss(logits, labels)
        return self.task.weighted_loss(logits, labels, weights)

    def _alignment(self, model, source, target, ctx: StepContext, target_logits=None):
        """The adaptation term on source and target features (mcc: on the target rows' logits, the head's output
        on ``target`` unless given)."""
        if self.method == "mcc":
            if target_logits is None:
                from ..models.build import head_logits

                target_logits = head_logits(_task_model(_inner_model(model)), target)
            return losses.minimum_class_confusion(target_logits, self.adapt.mcc_temperature), {}
        if self.method == "dann":
            coefficient = losses.grl_coefficient(ctx.progress, self.adapt.grl_gamma)
            loss, accuracy = losses.dann_loss(model.domain_classifier, source, target, coefficient)
            return loss, {"grl_coefficient": round(coefficient, 4), "domain_accuracy": accuracy.item()}
        if self.method == "mmd":
            return losses.mmd(source, target), {}
        return losses.coral(source, target), {}

    # ------------------------------------------------------------- evaluation
    def evaluation_extras(self, model) -> dict:
        """Domain numbers on held-out source-validation and target rows: alignment loss, domain accuracy, proxy A-distance."""
        if self.adapt is None or self.eval_rows is None:
            return {}
        inner = _task_model(_inner_model(model))
        device = next(inner.parameters()).device
        was_training = inner.training
        inner.eval()
        source, target = (_features(inner, batches, self.pooling, device) for batches in self.eval_rows)
        extras = {}
        with torch.no_grad():
            if self.method is not None:
                extras["alignment_loss"] = round(self._alignment(model, source.to(device), target.to(device),
                                                                 StepContext(1, 1, 0))[0].item(), 6)
            if self.method == "dann":
                model.domain_classifier.eval()
                _, accuracy = losses.dann_loss(model.domain_classifier, source.to(device), target.to(device), 1.0)
                model.domain_classifier.train()
                extras["domain_classifier_accuracy"] = round(accuracy.item(), 4)
        distance, linear_accuracy = weights_lib.proxy_a_distance(source.double(), target.double())
        extras.update({"proxy_a_distance": round(distance, 4), "linear_domain_accuracy": round(linear_accuracy, 4)})
        inner.train(was_training)
        self.last_extras = extras
        return {"adapt": extras}

    # ----------------------------------------------------------------- export
    def export(self, model, processor, out_dir):
        self.inner.export(model, processor, out_dir)  # the task model alone: the domain classifier is not saved

    def model_folders(self, out_dir):
        return self.inner.model_folders(out_dir)

    def export_metrics(self, out_dir):
        return self.inner.export_metrics(out_dir)

    def run_metrics(self, metrics, metric_names):
        return self.inner.run_metrics(metrics, metric_names)

    def top_level_metrics(self):
        out = dict(self.inner.top_level_metrics())
        adapt = self.adapt
        on_target = adapt is not None and adapt.target_validation is not None
        # which rows chose the best model; metrics.json's model_selection has the details
        summary = {"selected_on": "adapt.target_validation" if on_target else "source validation"}
        if adapt is not None:
            summary.update({"method": adapt.method, "weight": self.weight,
                            "target_ratio": adapt.target_ratio if adapt.method else None,  # no mixed batches without a term
                            "instance_weights": adapt.instance_weights, "target": adapt.target.files or
                            f"{adapt.target.source} [{adapt.target.split}]", "last_evaluation": self.last_extras})
        if self.weight_summary:
            summary["importance_weights"] = self.weight_summary
        out["adapt"] = summary
        return out


def _task_model(model):
    from ..models.build import unwrap

    return unwrap(model)


def _batches(ds, collator, batch_size: int = 64) -> list:
    columns = [c for c in ds.column_names if c not in ("length", "labels", WEIGHTS, DOMAIN)]
    rows = ds.select_columns(columns)
    return [collator([rows[i] for i in range(start, min(start + batch_size, len(rows)))])
            for start in range(0, len(rows), batch_size)]


def _features(task_model, batches: list, pooling: str, device):
    """Pooled features of the task model (eval mode, no gradients) over collated batches, on CPU."""
    from ..models.build import pooled_features

    was_training = task_model.training
    task_model.eval()
    out = []
    with torch.no_grad():
        for batch in batches:
            out.append(pooled_features(task_model, {k: v.to(device) for k, v in batch.items()}, pooling).float().cpu())
    task_model.train(was_training)
    return torch.cat(out)
