"""``nlp-transfer compare`` (``nlp_transfer.compare``): strategies x data fractions x seeds (plus a from-scratch baseline) on identical data.

The grid's data is fixed once, in ``DIR/data``: the recipe's splits (after ``data.limit``) are the
*pool*; for each seed the pool's train is permuted once per class and a fraction takes the start
of that permutation (``data.fraction_indices``), so every strategy of a (seed, fraction) cell
reads the same file, and a smaller fraction's rows are a subset of a larger one's. Validation and
test rows are the same for every cell.

Every cell is its own process (``python -m nlp_transfer.compare.cell``), so peak memory is per
cell and no cell inherits another's state. A finished cell leaves ``cells/<name>/result.json`` and is
never rerun: stop the command and run it again and it continues. The report (``report.md``,
``report.json``, learning curves) is in ``report.py``; the plan of the grid (its cells, their recipes, the data pool)
in ``plan.py``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import TrainingError
from ..recipe.load import load_recipe
from ..recipe.schema import Recipe
from .plan import (
    SCRATCH,
    Cell,
    CompareError,
    Grid,
    cell_dir,
    cell_recipe_dict,
    plan_grid,
    write_cell_recipe,
    write_pool,
)
from .report import (
    FEW_STEPS,
    SUGGESTED_MIN_STEPS,
    report_metrics,
    require_matplotlib,
    write_card_section,
    write_report,
)

logger = logging.getLogger(__name__)

# train keys whose right value depends on the strategy: a cell of another strategy than the recipe's takes its own defaults


def compare(recipe: str | Path | dict, overrides=None, *, out: str | Path, strategies=("frozen", "full", "lora"),
            fractions=(0.1, 1.0), seeds: int = 1, baseline: str = SCRATCH, backbones=None, jobs: int = 1,
            keep_models: bool = False, cell_overrides=None, figures: bool = True, card: str | Path | None = None,
            min_steps: int = 0) -> dict:
    """Run (or continue) the grid and write the transfer report to ``out``.

    Args:
        recipe: The base recipe (YAML path or dict): backbone, task, data, training budget.
        overrides: Dotted ``key=value`` overrides of the base recipe (``data.limit.train=8000``: the pool).
        out: The report folder (cells, data, report.md, report.json, figures).
        strategies: Registered strategy names to compare.
        fractions: Shares of the pool's train, each in (0, 1].
        seeds: How many seeds (``train.seed``, ``train.seed + 1``, ...): the subset and the training seed.
        baseline: ``scratch`` (the recipe's architecture with random weights, the ``full`` strategy) or ``none``.
        backbones: Extra ``model.name`` candidates: ranked by LogME on frozen features and fine-tuned with the
            first strategy on all of the pool's train.
        jobs: Cells run side by side, the CPU threads split between them.
        keep_models: Keep each cell's model folder (default: metrics only).
        cell_overrides: ``key=value`` applied to every cell, or ``STRATEGY:key=value`` to one strategy's cells
            (``scratch:train.lr=1e-4``).
        figures: Draw the PNG figures (needs matplotlib).
        card: An output folder whose model card gets a "How this compares" section.
        min_steps: A cell whose budget is fewer optimizer steps than this trains more whole epochs, up to at
            least ``min_steps`` (small fractions otherwise take a handful of steps and measure the budget, not
            the strategy); it evaluates as often as its recipe's epochs would. 0: every cell keeps its epochs.

    Returns:
        The report (what ``report.json`` holds).
    """
    if figures:
        require_matplotlib()  # before hours of runs, not after
    base = load_recipe(recipe, overrides)
    if not isinstance(min_steps, int) or isinstance(min_steps, bool) or min_steps < 0:
        raise CompareError(f"--min-steps: {min_steps!r}; give a whole number of optimizer steps (0: keep each cell's epochs)")
    grid = plan_grid(base, Path(out), strategies, fractions, seeds, baseline, backbones or [], cell_overrides or [])
    grid.min_steps = min_steps
    pool = write_pool(base, grid)
    todo = [c for c in grid.cells if not (cell_dir(grid.out, c) / "result.json").is_file()]
    logger.info("compare: %d cells, %d finished, %d to run (jobs=%d)", len(grid.cells), len(grid.cells) - len(todo), len(todo), jobs)
    _write_cells(base, grid, pool, todo, keep_models, cell_overrides or [], min_steps)
    failures = _run_cells(grid.out, todo, jobs)
    results = [json.loads((cell_dir(grid.out, c) / "result.json").read_text()) for c in grid.cells
               if (cell_dir(grid.out, c) / "result.json").is_file()]
    rankings = _rank_backbones(base, grid, pool, backbones, results, cell_overrides or []) if backbones else None
    report = write_report(grid.out, base, grid, pool, results, rankings=rankings, failures=failures, figures=figures)
    if card is not None:
        write_card_section(Path(card), report)
    if failures:
        raise TrainingError(f"compare: {len(failures)} cell(s) failed (the report covers the others); see the logs: "
                            + ", ".join(f"{name}: {log}" for name, log in failures.items())
                            + ". Run the same command again to retry only those")
    return report


def _write_cells(base: Recipe, grid: Grid, pool: dict, todo: list[Cell], keep_models: bool, cell_overrides: list[str],
                 min_steps: int) -> None:
    """Each cell still to run gets its folder and recipe; warn when a cell's budget is a handful of steps."""
    planned = {cell.name: write_cell_recipe(base, grid, pool, cell, keep_models, cell_overrides, min_steps)
               for cell in todo}
    fewest = min(planned.items(), key=lambda item: item[1], default=None)
    if fewest and fewest[1] < FEW_STEPS:
        logger.warning("compare: cell %s trains only %d optimizer steps: its score will measure that budget more than "
                       "the strategy. Consider --min-steps %d (more epochs for cells with fewer steps)",
                       fewest[0], fewest[1], SUGGESTED_MIN_STEPS)


def _rank_backbones(base: Recipe, grid: Grid, pool: dict, backbones: list[str], results: list[dict],
                    cell_overrides: list[str]):
    """LogME on frozen features of the recipe's backbone and each candidate, beside their fine-tuned scores."""
    from .logme import rank_backbones

    recipes = {name: load_recipe(cell_recipe_dict(base, Cell("frozen", 1.0, grid.seeds[0], name if i else None),
                                            cell_overrides, pool))
               for i, name in enumerate([base.model.name, *backbones])}
    return rank_backbones(recipes, results, grid.strategies[0], report_metrics(base)[1])


def _run_cells(out: Path, cells: list[Cell], jobs: int) -> dict[str, str]:
    """Run each cell in its own process, ``jobs`` at a time; ``{cell name: log}`` of those that failed."""
    jobs = max(1, int(jobs))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    failures: dict[str, str] = {}

    def run(cell: Cell) -> None:
        folder = cell_dir(out, cell)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
        started = time.perf_counter()
        with (folder / "log.txt").open("w") as log:
            code = _launch(folder, threads, env, log)
        if code != 0 or not (folder / "result.json").is_file():
            failures[cell.name] = str(folder / "log.txt")
            logger.warning("compare: cell %s failed (exit %d); log: %s", cell.name, code, folder / "log.txt")
        else:
            logger.info("compare: cell %s done in %.0f s", cell.name, time.perf_counter() - started)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(run, cells))
    return failures


def _launch(folder: Path, threads: int, env: dict, log) -> int:
    """Run one cell in a fresh Python process; its exit code."""
    return subprocess.call([sys.executable, "-m", "nlp_transfer.compare.cell", str(folder), "--threads", str(threads)],
                           stdout=log, stderr=subprocess.STDOUT, env=env)


