"""The ``tune`` section of a recipe: what to search (``space``) and how (metric, trials, sampler, pruner), checked whole
before any trial runs.

```yaml
tune:
  space:
    strategy.name: {type: categorical, choices: [frozen, full, lora]}
    train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    train.epochs: {type: int, low: 1, high: 4}
    strategy.r: {type: categorical, choices: [4, 8, 16]}   # sampled only when strategy.name is lora
  n_trials: 20
```

A space key is any recipe key's dotted path. A ``strategy.<key>`` that only some strategies have is sampled only in the
trials whose strategy has it. Every range end and every choice is validated as a recipe would be (``recipe/``), so a
value the recipe would refuse is refused before the first trial.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import RecipeError
from ..evaluation.metrics import greater_is_better
from ..recipe.schema import SECTIONS, AdaptConfig, Recipe
from ..strategies.registry import STRATEGIES
from ..tasks import get_task_type
from .base import STRATEGY_KEY, BaseRecipe

PARAM_TYPES = ("float", "int", "categorical")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "asha", "none")


@dataclass
class Param:
    """One searched key: ``type`` float or int (``low``..``high``, ``log`` scale or a ``step``) or categorical
    (``choices``). ``strategies``: the strategies whose recipes have the key (None: every recipe has it)."""

    key: str
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list | None = None
    strategies: tuple[str, ...] | None = None

    def applies_to(self, strategy: str) -> bool:
        return self.strategies is None or strategy in self.strategies

    def edge_values(self) -> list:
        """The values a recipe must accept for the whole range to be valid: both ends, or every choice."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


@dataclass
class SearchSettings:
    """A validated ``tune`` section."""

    space: list[Param]
    metric: str
    direction: Literal["maximize", "minimize"]
    n_trials: int | None = 20
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 42
    pruner_options: dict = field(default_factory=dict)  # startup_trials, warmup_evaluations, min_evaluations, ...
    raw: dict = field(default_factory=dict)  # the section as written, for the report

    def param(self, key: str) -> Param | None:
        return next((p for p in self.space if p.key == key), None)


_SETTINGS_KEYS = ("space", "metric", "direction", "n_trials", "timeout", "sampler", "pruner", "seed")
_PARAM_KEYS = ("type", "low", "high", "log", "step", "choices")


def read_search(base: BaseRecipe, overrides: dict[str, Any] | None = None) -> SearchSettings:
    """The recipe's ``tune`` section (with ``overrides`` such as ``{"n_trials": 5}``), checked whole against the recipe
    as ``train`` reads it.

    Raises:
        RecipeError: Every problem at once, each naming its ``tune.`` key (the recipe's own problems first).
    """
    recipe = base.load()
    section = {**base.search, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    problems: list[str] = []
    for key in section:
        if key not in _SETTINGS_KEYS:
            problems.append(f"tune.{key}: unknown key; valid keys for 'tune': {', '.join(_SETTINGS_KEYS)}")
    space = _read_space(section.get("space"), base, recipe, problems)
    metric = section.get("metric") or recipe.train.best_metric or _first_metric(recipe)
    direction = section.get("direction") or ("maximize" if greater_is_better(metric) else "minimize")
    if direction not in ("maximize", "minimize"):
        problems.append(f"tune.direction: got {direction!r}; expected maximize or minimize")
    n_trials, timeout = section.get("n_trials", 20 if section.get("timeout") is None else None), section.get("timeout")
    if n_trials is not None and (not isinstance(n_trials, int) or isinstance(n_trials, bool) or n_trials < 1):
        problems.append(f"tune.n_trials: got {n_trials!r}; expected a whole number of trials, 1 or more")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        problems.append(f"tune.timeout: got {timeout!r}; expected seconds, more than 0")
    sampler = section.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        problems.append(f"tune.sampler: got {sampler!r}; expected one of {', '.join(SAMPLERS)}")
    pruner = _read_pruner(section.get("pruner", "median"), problems)
    seed = section.get("seed", recipe.train.seed)
    if not isinstance(seed, int) or isinstance(seed, bool):
        problems.append(f"tune.seed: got {seed!r}; expected a whole number")
    if sampler == "grid":
        problems += _grid_problems(space)
    if problems:
        raise RecipeError(problems, recipe.source)
    return SearchSettings(space, metric, direction, n_trials, timeout, sampler, pruner.pop("name"), seed, pruner, section)


def sample(trial, settings: SearchSettings, base_strategy: str) -> dict[str, Any]:
    """One trial's recipe overrides, drawn from the space through Optuna's ``trial.suggest_*``: ``strategy.name``
    first, then only the keys that the drawn strategy has."""
    chosen: dict[str, Any] = {}
    strategy = base_strategy
    for param in sorted(settings.space, key=lambda p: p.key != STRATEGY_KEY):
        if not param.applies_to(strategy):
            continue
        if param.type == "categorical":
            value = trial.suggest_categorical(param.key, param.choices)
        elif param.type == "int":
            value = trial.suggest_int(param.key, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
        else:
            value = trial.suggest_float(param.key, param.low, param.high, step=param.step, log=param.log)
        chosen[param.key] = value
        if param.key == STRATEGY_KEY:
            strategy = value
    return chosen


def grid_space(settings: SearchSettings) -> dict[str, list]:
    """Optuna's ``GridSampler`` search space: every choice, or every step of a range."""
    grid = {}
    for param in settings.space:
        if param.type == "categorical":
            grid[param.key] = list(param.choices)
        else:
            count = round((param.high - param.low) / (param.step or 1)) + 1
            grid[param.key] = [param.low + i * (param.step or 1) for i in range(count)]
            if param.type == "int":
                grid[param.key] = [int(v) for v in grid[param.key]]
    return grid


# ---------------------------------------------------------------------- checks
def _read_space(space, base: BaseRecipe, recipe: Recipe, problems: list[str]) -> list[Param]:
    if not isinstance(space, dict) or not space:
        problems.append("tune.space: expected a mapping of recipe keys to ranges, e.g. "
                        "{train.lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}}; got "
                        f"{space!r}")
        return []
    params = []
    for key, spec in space.items():
        where = f"tune.space.{key}"
        if not isinstance(spec, dict):
            problems.append(f"{where}: expected a mapping such as {{type: float, low: 1.0e-5, high: 1.0e-3}} or "
                            f"{{type: categorical, choices: [a, b]}}; got {spec!r}")
            continue
        before = len(problems)
        for name in spec:
            if name not in _PARAM_KEYS:
                problems.append(f"{where}.{name}: unknown key; valid keys: {', '.join(_PARAM_KEYS)}")
        strategies = _key_owners(str(key), problems, where)
        param = _param(str(key), spec, strategies, problems, where)
        if param is not None and len(problems) == before:
            params.append(param)
    names = {p.key for p in params}
    for param in params:
        problems += _value_problems(param, base, recipe.strategy_name, names)
    return params


def _param(key: str, spec: dict, strategies, problems: list[str], where: str) -> Param | None:
    kind = spec.get("type")
    if kind not in PARAM_TYPES:
        problems.append(f"{where}.type: got {kind!r}; expected one of {', '.join(PARAM_TYPES)}")
        return None
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            problems.append(f"{where}.choices: got {choices!r}; a categorical key needs a non-empty list of choices")
            return None
        if any(not isinstance(c, (str, int, float, bool)) and c is not None for c in choices):
            problems.append(f"{where}.choices: got {choices!r}; each choice must be a string, number, boolean or null")
            return None
        return Param(key, kind, choices=list(choices), strategies=strategies)
    low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
    number = int if kind == "int" else (int, float)
    bad = [name for name, value in (("low", low), ("high", high)) if not isinstance(value, number) or isinstance(value, bool)
           or not math.isfinite(value)]
    for name in bad:
        problems.append(f"{where}.{name}: got {spec.get(name)!r}; expected {'a whole number' if kind == 'int' else 'a number'}")
    if bad:
        return None
    if low > high:
        problems.append(f"{where}: low {low} is above high {high}; swap them")
        return None
    if not isinstance(log, bool):
        problems.append(f"{where}.log: got {log!r}; expected true or false")
        return None
    if log and low <= 0:
        problems.append(f"{where}: a log range must be above 0; got low {low} (use a small positive low such as 1.0e-6, "
                        "or log: false)")
        return None
    if step is not None and (not isinstance(step, number) or isinstance(step, bool) or step <= 0):
        problems.append(f"{where}.step: got {step!r}; expected a positive {'whole number' if kind == 'int' else 'number'}")
        return None
    if step is not None and log:
        problems.append(f"{where}: step and log: true cannot be used together (Optuna samples a log range continuously); "
                        "drop one")
        return None
    return Param(key, kind, low=low, high=high, log=log, step=step, strategies=strategies)


def _key_owners(key: str, problems: list[str], where: str) -> tuple[str, ...] | None:
    """Which strategies have ``key`` (None: every recipe has it); a problem when no recipe has it."""
    section, _, rest = key.partition(".")
    if section == "strategy":
        owners = tuple(name for name, cls in STRATEGIES.items() if rest in {f.name for f in dataclasses.fields(cls.Options)})
        if rest == "name":
            return None
        if not owners:
            every = sorted({f.name for cls in STRATEGIES.values() for f in dataclasses.fields(cls.Options)})
            problems.append(f"{where}: no strategy has the key '{rest}'; strategy keys: {', '.join(every)}")
        return owners if len(owners) < len(STRATEGIES) else None
    classes = {**SECTIONS, "adapt": AdaptConfig}
    cls, parts = classes.get(section), rest.split(".") if rest else []
    if cls is None or not parts:
        problems.append(f"{where}: not a recipe key; a key is a dotted path such as train.lr or strategy.r "
                        f"(sections: {', '.join([*classes, 'strategy'])})")
        return None
    for depth, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            problems.append(f"{where}: '{'.'.join([section, *parts[:depth]])}' has no key '{part}'; its keys: "
                            f"{', '.join(fields)}")
            return None
        hint = typing.get_type_hints(cls)[part]
        cls = next((a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)), None)
        if depth < len(parts) - 1 and cls is None:
            problems.append(f"{where}: '{section}.{'.'.join(parts[:depth + 1])}' is a value, not a section")
            return None
    return None


def _value_problems(param: Param, base: BaseRecipe, strategy: str, searched: set[str]) -> list[str]:
    """Each end of the range (each choice) on the recipe, validated as ``train`` would: the recipe's own problems."""
    overrides = {}
    if param.strategies is not None and strategy not in param.strategies:
        if STRATEGY_KEY not in searched:
            return [(f"tune.space.{param.key}: only the {', '.join(param.strategies)} strateg"
                    f"{'y has' if len(param.strategies) == 1 else 'ies have'} this key, and the recipe's strategy is "
                    f"{strategy} (tune.space does not search strategy.name); remove the key or search strategy.name")]
        overrides[STRATEGY_KEY] = param.strategies[0]
    problems = []
    for value in param.edge_values():
        try:
            base.load({**overrides, param.key: value})
        except RecipeError as error:
            mine = [p for p in error.problems if p.startswith(param.key)] or error.problems
            problems += [f"tune.space.{param.key}: the value {value!r} is refused: {p}" for p in mine]
    return problems


PRUNER_OPTIONS = {"median": {"startup_trials": 3, "warmup_evaluations": 1},
                  "hyperband": {"min_evaluations": 1, "reduction_factor": 3},
                  "asha": {"min_evaluations": 1, "reduction_factor": 3}, "none": {}}


def _read_pruner(value, problems: list[str]) -> dict:
    """``pruner: median`` or ``{name: median, startup_trials: 3, warmup_evaluations: 1}`` -> name and options (the
    budget is counted in evaluations: epochs, where the loop evaluates once per epoch)."""
    spec = {"name": value} if isinstance(value, str) else dict(value) if isinstance(value, dict) else {"name": value}
    name = spec.get("name", "median")
    if name not in PRUNERS:
        problems.append(f"tune.pruner: got {name!r}; expected one of {', '.join(PRUNERS)}")
        return {"name": "none"}
    options = dict(PRUNER_OPTIONS[name])
    for key, option in spec.items():
        if key == "name":
            continue
        if key not in options:
            problems.append(f"tune.pruner.{key}: unknown key for the {name} pruner; its keys: "
                            f"{', '.join(['name', *options]) }")
        elif not isinstance(option, int) or isinstance(option, bool) or option < (2 if key == "reduction_factor" else 0):
            problems.append(f"tune.pruner.{key}: got {option!r}; expected a whole number"
                            f"{' of 2 or more' if key == 'reduction_factor' else ', 0 or more'}")
        else:
            options[key] = option
    return {"name": name, **options}


def _grid_problems(space: list[Param]) -> list[str]:
    problems = []
    for param in space:
        if param.strategies is not None:
            problems.append(f"tune.space.{param.key}: the grid sampler tries every combination, and this key applies "
                            f"only to {', '.join(param.strategies)}; remove it or use sampler: tpe or random")
        elif param.type == "float" and param.step is None:
            problems.append(f"tune.space.{param.key}: the grid sampler needs a step for a float range (or choices)")
        elif param.type == "int" and param.log:
            problems.append(f"tune.space.{param.key}: the grid sampler needs a linear range (log: false)")
    return problems


def _first_metric(recipe: Recipe) -> str:
    return (recipe.train.metrics or list(get_task_type(recipe.task.type).default_metrics) or ["loss"])[0]
