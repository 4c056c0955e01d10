"""The plan of a ``compare`` grid: its cells (strategy x fraction x seed, plus the baseline), the checks of their
recipes, the data pool every cell reads, and each cell's folder and recipe."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import NlpTransferError, RecipeError
from ..models.files import resolve_model_path
from ..recipe.load import load_recipe
from ..recipe.paths import resolve_recipe_paths
from ..strategies.registry import STRATEGIES

SCRATCH = "scratch"
BASELINES = (SCRATCH, "none")
STRATEGY_TRAIN_KEYS = ("lr", "head_lr", "weight_decay", "warmup_ratio")
DATA_FORMAT = "parquet"


class CompareError(NlpTransferError, ValueError):
    """The grid asked of ``compare`` cannot be run (a fraction outside (0, 1], an unknown strategy, ...)."""


@dataclass
class Cell:
    """One run of the grid: a strategy (or the baseline) on one seed's fraction of the pool."""

    strategy: str
    fraction: float
    seed: int
    backbone: str | None = None  # --backbones: the model.name of this cell when not the recipe's

    @property
    def name(self) -> str:
        prefix = f"bb-{slug(self.backbone)}-" if self.backbone else ""
        return f"{prefix}{self.strategy}-f{self.fraction:g}-s{self.seed}"


@dataclass
class Grid:
    """What ``compare`` runs: the cells, and where the pool and subsets live."""

    out: Path
    strategies: list[str]
    fractions: list[float]
    seeds: list[int]
    baseline: str
    cells: list[Cell] = field(default_factory=list)
    min_steps: int = 0  # cells under this many optimizer steps train more epochs (see compare)


# ---------------------------------------------------------------------- the grid
def plan_grid(base, out: Path, strategies, fractions, seeds: int, baseline: str, backbones, cell_overrides) -> Grid:
    """Check the grid's inputs (every problem at once) and list its cells."""
    strategies = [s.strip() for s in (strategies.split(",") if isinstance(strategies, str) else strategies) if s.strip()]
    problems = []
    parsed = []
    for value in (fractions.split(",") if isinstance(fractions, str) else fractions):
        try:
            f = float(value)
        except (TypeError, ValueError):
            problems.append(f"--fractions: {value!r} is not a number; give shares of the training pool in (0, 1], e.g. 0.01,0.1,1")
            continue
        if not 0 < f <= 1:
            problems.append(f"--fractions: {f:g} is outside (0, 1]; a fraction is a share of the training pool (1 = all of it)")
        parsed.append(f)
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        problems.append(f"--strategies: unknown {', '.join(map(repr, unknown))}; registered: {', '.join(STRATEGIES)}")
    if not strategies:
        problems.append("--strategies: none given; name at least one of: " + ", ".join(STRATEGIES))
    if baseline not in BASELINES:
        problems.append(f"--baseline: {baseline!r} is not a baseline; use one of: {', '.join(BASELINES)}")
    if not isinstance(seeds, int) or seeds < 1:
        problems.append(f"--seeds: {seeds!r}; give how many seeds to run (1 or more)")
    for entry in cell_overrides:
        target = entry.split(":", 1)[0] if ":" in entry.split("=", 1)[0] else None
        if target is not None and target not in [*strategies, SCRATCH]:
            problems.append(f"--set {entry!r}: {target!r} is not one of the compared strategies ({', '.join([*strategies, SCRATCH])})")
    if problems:
        raise CompareError("compare: " + "; ".join(problems))
    _check_cell_recipes(base, strategies, cell_overrides)
    if baseline == SCRATCH:
        _check_baseline(base, cell_overrides)
    fractions = sorted(set(parsed))
    seed_values = [base.train.seed + i for i in range(seeds)]
    runs = [*strategies, *([SCRATCH] if baseline == SCRATCH else [])]
    cells = [Cell(s, f, seed) for seed in seed_values for f in fractions for s in runs]
    cells += [Cell(strategies[0], 1.0, seed, bb) for bb in backbones for seed in seed_values]
    return Grid(out.expanduser().resolve(), strategies, fractions, seed_values, baseline, cells)


def _check_cell_recipes(base, strategies, cell_overrides) -> None:
    """Every strategy's cell recipe must validate (distill needs its teacher, ...): all problems now, not mid-grid."""
    problems = []
    for strategy in strategies:
        try:
            load_recipe(cell_recipe_dict(base, Cell(strategy, 1.0, base.train.seed), cell_overrides))
        except RecipeError as exc:
            problems += [f"{strategy}: {p}" for p in exc.problems]
    if problems:
        raise CompareError("compare: the cells' recipes are invalid (set what a strategy needs with "
                           "--set STRATEGY:KEY=VALUE): " + "; ".join(problems))


def _check_baseline(base, cell_overrides) -> None:
    """The from-scratch baseline must be buildable for this recipe: fail now, naming why, not after the other cells."""
    raw = cell_recipe_dict(base, Cell(SCRATCH, 1.0, base.train.seed), cell_overrides)
    try:
        load_recipe(raw)
    except RecipeError as exc:
        raise CompareError(f"--baseline scratch: this recipe cannot build its from-scratch baseline "
                           f"(model.from_scratch=true, strategy full): {'; '.join(exc.problems)}. "
                           "Use --baseline none to compare strategies only") from None

    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(resolve_model_path(base.model.name, base.model.revision))
    except Exception as exc:  # any failure here means: no architecture to build random weights in
        raise CompareError(f"--baseline scratch: cannot read the architecture of model.name={base.model.name!r} "
                           f"to build random weights in it: {exc}. Use --baseline none to compare strategies only") from None


# ---------------------------------------------------------------------- data
def write_pool(base, grid: Grid) -> dict:
    """The pool's splits and every (seed, fraction) train subset as parquet files under ``out/data`` (once).

    Returns: ``{"splits": {split: path}, "rows": {split: n}, "subsets": {(seed, fraction): path}, "labels": [...]}``.
    """
    from ..data.sampling import fraction_indices
    from ..tasks.splits import encode_labels, load_task_splits

    folder = grid.out / "data"
    manifest_file = folder / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {"subsets": {}}
    source = _data_fingerprint(base)
    if manifest.get("source", source) != source:
        raise CompareError(f"--out {grid.out}: its data/ was made from another recipe's data, task or seed "
                           f"({manifest['source']}); a resumed grid must keep them. Use a new --out for this recipe")
    if "splits" not in manifest:
        raw = load_task_splits(base.data, base.train.seed, base.task)
        raw = type(raw)({s: ds for s, ds in raw.items() if s != "unlabeled"})
        encoded, spec = encode_labels(raw, base.task, base.data)
        folder.mkdir(parents=True, exist_ok=True)
        splits = {}
        for split, ds in raw.items():
            splits[split] = str(folder / f"pool-{split}.{DATA_FORMAT}")
            ds.to_parquet(splits[split])
        strata = spec.kind.stratify_by(encoded["train"])
        (folder / "strata.json").write_text(json.dumps(list(strata) if strata is not None else None, default=str))
        manifest = {"source": source, "splits": splits, "rows": {s: len(ds) for s, ds in raw.items()}, "subsets": {},
                    "labels": list(spec.label_names) if spec.kind.named_outputs else None}
    strata = json.loads((folder / "strata.json").read_text())
    train = None
    for seed in grid.seeds:
        for fraction in grid.fractions:
            key = f"{seed}/{fraction:g}"
            if key in manifest["subsets"]:
                continue
            if fraction >= 1:
                manifest["subsets"][key] = {"file": manifest["splits"]["train"], "rows": list(range(manifest["rows"]["train"]))}
                continue
            if train is None:
                from datasets import Dataset

                train = Dataset.from_parquet(manifest["splits"]["train"])
            rows = fraction_indices(len(train), fraction, seed, strata)
            path = folder / f"train-s{seed}-f{fraction:g}.{DATA_FORMAT}"
            train.select(rows).to_parquet(str(path))
            manifest["subsets"][key] = {"file": str(path), "rows": rows}
    manifest["source"] = source
    write_json(manifest_file, manifest)
    return manifest


# ---------------------------------------------------------------------- cells
def cell_dir(out: Path, cell: Cell) -> Path:
    return out / "cells" / cell.name


def cell_recipe_dict(base, cell: Cell, cell_overrides, pool: dict | None = None, run_dir: Path | None = None) -> dict:
    """The cell's recipe: the base recipe on the cell's data, strategy, seed and (for the baseline) random weights.

    Every path in it is absolute, so the cell's ``recipe.yaml`` loads from its own folder and reads the same files.
    """
    raw = copy.deepcopy(base.to_dict())
    scratch = cell.strategy == SCRATCH
    trains_as = "full" if scratch else cell.strategy
    if trains_as != base.strategy_name:
        raw["strategy"] = {"name": trains_as}
        for key in STRATEGY_TRAIN_KEYS:
            raw["train"][key] = None
        if "train.epochs" in base.defaults_used:
            raw["train"]["epochs"] = None
    raw["model"]["from_scratch"] = scratch
    raw["model"]["pooling"] = None if "model.pooling" in base.defaults_used else raw["model"]["pooling"]
    if cell.backbone:
        raw["model"]["name"], raw["model"]["revision"], raw["model"]["pooling"] = cell.backbone, None, None
    raw["train"]["seed"] = cell.seed
    raw["train"]["report_to"] = []
    if pool is not None:
        files = {split: path for split, path in pool["splits"].items()}
        files["train"] = pool["subsets"][f"{cell.seed}/{cell.fraction:g}"]["file"]
        raw["data"] = {**raw["data"], "source": None, "config": None, "dir": None, "files": files, "limit": {},
                       "fraction": None, "format": DATA_FORMAT}
        if pool.get("labels") and not raw["task"].get("labels"):
            raw["task"]["labels"] = pool["labels"]  # every cell maps labels the same way, whatever its subset holds
    raw["output"] = {"dir": str(run_dir or "run"), "overwrite": True, "save": "model", "push_to_hub": None}
    for entry in cell_overrides:
        target, _, assignment = entry.rpartition(":") if ":" in entry.split("=", 1)[0] else ("", "", entry)
        if target and target != cell.strategy:
            continue
        key, _, value = assignment.partition("=")
        _set_dotted(raw, key.strip(), yaml.safe_load(value))
    resolve_recipe_paths(raw, Path.cwd())  # --backbones and --set paths were typed here; the base's are absolute already
    return raw


def write_cell_recipe(base, grid: Grid, pool: dict, cell: Cell, keep_models: bool, cell_overrides,
                       min_steps: int = 0) -> int:
    """Write the cell's ``recipe.yaml`` and ``cell.json``; returns how many optimizer steps it will train."""
    folder = cell_dir(grid.out, cell)
    folder.mkdir(parents=True, exist_ok=True)
    raw = cell_recipe_dict(base, cell, cell_overrides, pool, folder / "model")
    rows = len(pool["subsets"][f"{cell.seed}/{cell.fraction:g}"]["rows"])
    epochs, steps = raise_epochs_to_min_steps(raw, rows, min_steps)
    spec = {"cell": {"name": cell.name, "strategy": cell.strategy, "fraction": cell.fraction, "seed": cell.seed,
                     "backbone": cell.backbone, "train_rows": rows, "epochs": epochs},
            "keep_model": keep_models}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    write_json(folder / "cell.json", spec)
    return steps


def raise_epochs_to_min_steps(raw: dict, rows: int, min_steps: int) -> tuple[float, int]:
    """The cell's ``(epochs, optimizer steps)``, its epochs raised (in ``raw``) to the fewest whole epochs of at
    least ``min_steps`` steps.

    A raised cell evaluates every ``steps / recipe epochs`` steps (as often as its recipe would), not every epoch.
    """
    train = load_recipe(raw).train  # the cell's resolved budget: a strategy's default epochs included
    updates_per_epoch = math.ceil(math.ceil(rows / train.batch_size) / train.grad_accum_steps)
    steps = max(1, math.ceil(train.epochs * updates_per_epoch))  # as the loop counts them
    if not min_steps or steps >= min_steps:
        return train.epochs, steps
    epochs = math.ceil(min_steps / updates_per_epoch)
    raw["train"]["epochs"] = epochs
    if not train.eval_every:
        raw["train"]["eval_every"] = math.ceil(epochs * updates_per_epoch / max(1, math.ceil(train.epochs)))
    return epochs, epochs * updates_per_epoch


# ---------------------------------------------------------------------- helpers
def _data_fingerprint(base) -> str:
    """What fixes the pool: the data and task sections and the base seed."""
    import hashlib

    key = json.dumps({"data": base.to_dict()["data"], "task": base.to_dict()["task"], "seed": base.train.seed},
                     sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _set_dotted(raw: dict, key: str, value) -> None:
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {}) if isinstance(node.get(part), dict) or part not in node else node[part]
        if not isinstance(node, dict):
            raise CompareError(f"--set {key}: {part!r} is not a section of the recipe")
    node[last] = value


def write_json(path: Path, data) -> None:
    """Whole or not at all: a sibling temporary file, then a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text).strip("-")[-40:]
