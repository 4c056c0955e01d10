"""Model cards rendered offline from the real run's metrics with huggingface_hub.

One Jinja template per artifact kind (``model_cards/<kind>.md``: classifier, adapter, merged),
each extending ``_base.md`` and its shared ``_*.md`` partials. ``ModelCard.from_template``
renders with a loader-less ``jinja2.Template``, which cannot resolve ``{% extends %}``; so the
body is rendered here with a ``FileSystemLoader`` over the templates folder, exactly as
``from_template`` would (``card_data`` = the YAML of a ``ModelCardData``), and handed to
``ModelCard``. Nothing here touches the network.
"""

from __future__ import annotations

import dataclasses
import json
import platform
from functools import cache
from importlib import metadata, resources
from pathlib import Path

import jinja2
import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..adapt.card import adapt_note
from ..models.files import ADAPTER_CONFIG, ADAPTER_WEIGHTS, MERGED

PROJECT_URL = "https://pypi.org/project/nlp-transfer/"
# The merged copy's repo is the adapter's repo id plus this suffix. Not a subfolder of the adapter repo:
# transformers sends any repo with adapter_config.json at its root to the adapter's base model, even
# with subfolder=..., so a merged model nested there would not load with the Auto classes.
MERGED_SUFFIX = "-merged"
# Our metric names -> Hub metric types (https://hf.co/metrics); averaged variants keep the type, add args.
_METRIC_TYPES = {"pearson": "pearsonr", "spearman": "spearmanr"}
_FRAMEWORKS = {"nlp_transfer": "nlp-transfer", "transformers": "transformers", "torch": "torch", "peft": "peft",
               "accelerate": "accelerate", "datasets": "datasets", "huggingface_hub": "huggingface_hub"}


def write_model_card(folder: Path, recipe, metrics: dict, task) -> ModelCard:
    """Render ``README.md`` for an output folder (and ``merged/README.md`` for lora's merged copy).

    Args:
        folder: The staged output folder, weights and ``metrics.json`` already written.
        recipe: The run's ``Recipe``.
        metrics: What ``metrics.json`` holds.
        task: The run's ``TaskSpec`` (label names, problem type).

    Returns:
        The card of the folder itself.
    """
    folder = Path(folder)
    model_id = model_id_for(recipe)
    kind = "adapter" if (folder / ADAPTER_CONFIG).is_file() else "classifier"
    card = render_model_card(kind, folder, recipe, metrics, task, model_id)
    card.save(folder / "README.md")
    if kind == "adapter" and (folder / MERGED / "config.json").is_file():
        merged = render_model_card("merged", folder / MERGED, recipe, metrics, task, model_id + MERGED_SUFFIX)
        merged.save(folder / MERGED / "README.md")
    return card


def model_id_for(recipe) -> str:
    """The repo id a card's usage code names: ``card.model_id``, the push target, or the output folder's name."""
    push = recipe.output.push_to_hub
    return recipe.card.model_id or (push.repo_id if push else None) or Path(recipe.output.dir).name


def render_model_card(kind: str, folder: Path, recipe, metrics: dict, task, model_id: str) -> ModelCard:
    """The card of one artifact kind (``classifier``, ``adapter``, ``merged``) for a model folder."""
    card_data = _card_data(kind, recipe, metrics, task, model_id)
    context = {**card_data.to_dict(), **_context(kind, folder, recipe, metrics, task, model_id)}
    content = _templates().get_template(f"{kind}.md").render(card_data=card_data.to_yaml(), **context)
    return ModelCard(content)


def retarget_card(text: str, new_ids: dict[str, str]) -> str:
    """A card's text with the repo ids it names replaced (``{rendered id: pushed id}``).

    Cards name ids only as a ``# id`` title, a ``"id"`` string in code and a backquoted id in prose, so exactly
    those forms are replaced; the model-index name follows the card's own id.
    """
    new_ids = {old: new for old, new in new_ids.items() if new and old != new}
    if not new_ids:
        return text
    card = ModelCard(text)
    body = card.text
    for old, new in sorted(new_ids.items(), key=lambda item: -len(item[0])):
        for form in ("# {}\n", '"{}"', "`{}`"):
            body = body.replace(form.format(old), form.format(new))
    card.text = body
    card.data.model_name = new_ids.get(card.data.model_name, card.data.model_name)
    return str(card)


@cache
def _templates() -> jinja2.Environment:
    root = resources.files("nlp_transfer.model_cards")
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)), trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, undefined=jinja2.StrictUndefined)


def _card_data(kind: str, recipe, metrics: dict, task, model_id: str) -> ModelCardData:
    """Front matter: what the Hub indexes (base model and relation, task, data, scores)."""
    base = recipe.model.name if _is_hub_id(recipe.model.name) else None
    relation = {"adapter": "adapter"}.get(kind, "finetune")  # a merged LoRA is a fine-tune of one base, not a multi-model merge
    names = [n for n in metrics["validation"] if n != "loss" and task.kind.indexed(n)]
    return ModelCardData(
        library_name="peft" if kind == "adapter" else "transformers",
        base_model=base, base_model_relation=relation if base else None,
        pipeline_tag=task.kind.pipeline_tag,
        datasets=[_hub_data(recipe.data)] if _hub_data(recipe.data) else None,
        language=recipe.card.language, license=recipe.card.license,
        tags=["nlp-transfer", recipe.strategy_name, task.type] + (["merged-lora"] if kind == "merged" else []),
        metrics=sorted({_metric_type(n)[0] for n in names}) or None,
        eval_results=_eval_results(recipe, metrics, task) or None, model_name=model_id,
    )


def _eval_results(recipe, metrics: dict, task) -> list[EvalResult]:
    data = recipe.data
    dataset = _hub_data(data) or _local_data_name(data)
    results = []
    for split in ("validation", "test"):
        for name, value in metrics.get(split, {}).items():
            if name == "loss" or not task.kind.indexed(name):
                continue
            metric_type, metric_args = _metric_type(name)
            results.append(EvalResult(
                task_type=task.kind.pipeline_tag, task_name=task.kind.display_name,
                dataset_type=_hub_data(data) or "local-files", dataset_name=dataset, dataset_config=data.config,
                dataset_split=split, metric_type=metric_type, metric_name=name, metric_value=value, metric_args=metric_args,
            ))
    return results


def _metric_type(name: str) -> tuple[str, dict | None]:
    """The Hub metric type of one of our metric names (``f1_macro`` -> ``f1`` with ``average: macro``)."""
    base, _, average = name.rpartition("_")
    if average in ("macro", "micro", "weighted"):
        return base, {"average": average}
    return _METRIC_TYPES.get(name, name), None


def _context(kind: str, folder: Path, recipe, metrics: dict, task, model_id: str) -> dict:
    """Everything the templates show besides the front matter."""
    options = {k: v for k, v in dataclasses.asdict(recipe.strategy).items() if k != "name"}
    splits = [s for s in ("validation", "test") if s in metrics]
    names = [n for n in metrics["validation"] if n != "loss"] + ["loss"]
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    labels = task.kind.card_labels(task)
    remote_code = "auto_map" in config
    return {
        "model_id": model_id, "merged_id": model_id + MERGED_SUFFIX, "adapter_id": model_id.removesuffix(MERGED_SUFFIX),
        "project_url": PROJECT_URL, "files_note": _files_note(kind), "reload_note": _reload_note(metrics.get("reload_check")),
        "task_type": task.type, "strategy": recipe.strategy_name,
        "task_phrase": task.kind.phrase(task, recipe), "labels": labels,
        "base_model_md": _base_model_md(recipe.model.name),
        "strategy_summary": recipe.strategy.card_summary(recipe, metrics) + adapt_note(recipe, metrics) + _multitask_note(metrics),
        "strategy_options": ", ".join(f"{k}={v}" for k, v in options.items()),
        "results": {s: metrics[s] for s in splits}, "metric_names": names, "data_sizes": metrics["data"],
        "results_note": _results_note(metrics, splits),
        "train": recipe.train, "precision": _precision(recipe, metrics), "max_length": recipe.model.max_length,
        "data_md": _data_md(recipe.data),
        "parameters": metrics["parameters"], "run": metrics["train"],
        "hardware": _hardware(metrics.get("num_processes", 1)), "versions": _versions(),
        "intended_uses": recipe.card.intended_uses or _default_intended_uses(recipe, task),
        "limitations": recipe.card.limitations or _default_limitations(recipe, metrics),
        "settings_origin": recipe.card.settings_origin,
        "example": task.kind.example(recipe), "pipeline_task": task.kind.pipeline_tag,
        "image": task.kind.modality == "image", "base_model_id": recipe.model.name,
        "example_args": task.kind.example_args(recipe),
        "pipeline_kwargs": task.kind.pipeline_kwargs() + (", trust_remote_code=True" if remote_code else ""),
        "remote_code": remote_code, "mean_pooling": recipe.model.pooling == "mean", "has_merged": (folder / MERGED / "config.json").is_file(),
        "adapter_size": _size(folder / ADAPTER_WEIGHTS), "config_kwargs": _config_kwargs(task),
        "decode": task.kind.decode_snippet(task),
        "peft_class": task.kind.peft_auto_class,
    }


def _multitask_note(metrics: dict) -> str:
    """For one task of a multi-task run: which tasks shared the encoder, and how batches were drawn."""
    info = metrics.get("multitask")
    if not info:
        return ""
    others = [f"`{name}`" for name in info["tasks"] if name != info["task"]]
    return (f"; trained in one multi-task run with {', '.join(others)} on one shared encoder (each task its own head; "
            f"batches drawn by `{info['sampling']}` task sampling, this task's loss weight {info['weight']:g}; the best "
            f"model chosen on `{info['selected_on']}` across tasks). This folder holds the shared encoder and this task's head")


def _precision(recipe, metrics: dict) -> str:
    """The precision the run trained in, as markdown; ``auto`` says what it resolved to and why."""
    used = metrics.get("mixed_precision") or {}
    if used.get("requested") == "auto":
        return f"`{used['used']}` (`auto`: {used['reason']})"
    return f"`{used.get('used', recipe.train.mixed_precision)}`"


def _files_note(kind: str) -> str:
    where = " (locally, in the parent of this folder)" if kind == "merged" else ""
    return f"The resolved recipe (`recipe.yaml`) and every number above (`metrics.json`) come with this model{where}."


def _reload_note(check: dict | None) -> str:
    if not check:
        return ""
    folders = [("the adapter" if f == "." else f"`{f}/`") for f in check.get("folders", {})]
    which = f"each saved model ({' and '.join(folders)})" if len(folders) > 1 else "the saved model"
    return (f"{which}, reloaded through the normal load path, reproduces the trained model's logits on {check['rows']} "
            f"validation rows (max abs difference {check['max_abs_logit_diff']:.2g})")


def _results_note(metrics: dict, splits: list[str]) -> str:
    run = metrics["train"]
    chosen = f"the model of step {run['best_step']} (best validation score)" if run.get("best_step") else "the final model"
    return (f"Scores of {chosen} on the {' and '.join(splits)} split{'s' if len(splits) > 1 else ''}, "
            "computed by nlp_transfer at the end of training (the same numbers as in `metrics.json` and the metadata above).")


def _default_intended_uses(recipe, task) -> str:
    what = task.kind.intended_use(task)
    like = "images like those" if task.kind.modality == "image" else "text like that"
    return (f"{what[0].upper()}{what[1:]}, for {like} of {_dataset_words(recipe.data)}. "
            "It was made with nlp_transfer as a transfer-learning result; no use beyond that was designed or tested.")


def _default_limitations(recipe, metrics: dict) -> str:
    sizes = metrics["data"]
    small = " That is a small training budget; expect the scores to move with more data or epochs." if sizes.get("train", 0) < 1000 else ""
    return (f"Trained on {sizes.get('train', 0):,} examples of {_dataset_words(recipe.data)} for {recipe.train.epochs:g} epoch(s), "
            f"and scored on {sizes.get('validation', 0):,} validation examples from the same source.{small} "
            "It inherits the biases and the language coverage of its base model and data, and was not evaluated on "
            "other domains, languages or for fairness. Evaluate it on your own data before use.")


def _dataset_words(data) -> str:
    if _hub_data(data):
        return f"`{data.source}`" + (f" (`{data.config}`)" if data.config else "")
    return f"the local dataset `{_local_data_name(data)}`"


def _local_data_name(data) -> str:
    """A name for local data files that does not leak this machine's paths: the train file's folder."""
    if data.source == "imagefolder":
        return Path(data.dir or "images").name
    train = Path(data.files.get("train", "data"))
    return train.parent.name or train.stem


def _data_md(data) -> str:
    if data.source == "imagefolder":
        return f"a local image folder (`{Path(data.dir or 'images').name}`)"
    if data.source:
        return f"[`{data.source}`](https://huggingface.co/datasets/{data.source})" + (f", config `{data.config}`" if data.config else "")
    files = ", ".join(f"{split} `{Path(p).name}`" for split, p in data.files.items())
    carved = "" if "validation" in data.files else f", validation held out from train ({data.validation_fraction:.0%})"
    return f"local files ({files}){carved}"


def _base_model_md(name: str) -> str:
    return f"[`{name}`](https://huggingface.co/{name})" if _is_hub_id(name) else f"a local model (`{Path(name).name}`)"


def _is_hub_id(name: str) -> bool:
    return not Path(name).expanduser().exists() and not name.startswith(("/", ".", "~")) and name.count("/") <= 1


def _hub_data(data) -> str | None:
    """The Hub dataset id, if the data came from the Hub (a local image folder did not)."""
    return data.source if data.source != "imagefolder" else None


def _config_kwargs(task) -> str:
    id2label = {i: task.id2label[i] for i in sorted(task.id2label)}
    label2id = {n: i for i, n in id2label.items()}
    return (f"num_labels={task.num_labels}, id2label={id2label!r}, label2id={label2id!r}, "
            f"problem_type={task.problem_type!r}")


def _hardware(num_processes: int) -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})"
    return device if num_processes <= 1 else f"{num_processes} processes, {device}"


def _versions() -> dict[str, str]:
    versions = {}
    for name, dist in _FRAMEWORKS.items():
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _size(path: Path) -> str:
    if not path.is_file():
        return "an unknown size"
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"
