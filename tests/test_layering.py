"""The package's import structure: no import cycles, lower layers never import higher ones, and a function-level
import of the package's own modules only where it keeps a heavy library off a light module's import.

Every ``import`` of the package's own modules counts, function-level ones included (parsed, not run).
The layer order is written once, below, from the bottom up.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nlp_transfer"
HEAVY = ("torch", "transformers", "datasets", "peft", "accelerate", "evaluate", "safetensors", "sklearn", "scipy",
         "numpy", "pyarrow", "PIL", "huggingface_hub", "onnxruntime", "matplotlib")

# From the bottom up: a module may import modules of its own layer or of lower layers. A module's layer is that of the
# longest prefix below that names it (a prefix is a module or a package).
LAYERS: list[tuple[str, ...]] = [
    ("_lazy", "errors"),
    # leaves every layer may read: the recipe schema, the task contract, plain columns, where offline copies are
    ("recipe.schema", "tasks.spec", "data.columns", "hub.offline", "hub.packaged", "hub.cache_layout",
     "adapt"),
    # the libraries below the task types: they take what the task type decided as arguments
    ("data", "models", "evaluation"),  # data.cache: the caches are data-side (what a batch holds)
    ("tasks",),
    # what trains and what the loss is; adapt's and multi-task's strategy pieces sit here too
    ("strategies", "adapt.strategy", "adapt.batches", "adapt.losses", "adapt.weights", "multitask.strategy",
     "multitask.model", "multitask.sampling"),
    # recipe loading and validation ask the task types and strategies for their rules
    ("recipe", "adapt.checks"),
    # THE loop and what it needs
    ("training.loop", "training.checkpoints", "training.runlock", "training.schedules", "training.precision",
     "training.heap", "training.processes", "training.hooks"),
    # what a finished run becomes
    ("outputs", "inference", "hub", "adapt.card", "adapt.data", "adapt.selection", "adapt.self_training"),
    # the runs: single-task stages and the multi-task run, peers on the same public stages
    ("training",),
    ("multitask",),
    ("compare", "search"),
    ("api",),
    ("cli", "__main__", ""),
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _target(module: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The package modules an import statement reads (``from . import x`` of a module ``x`` reads ``x``)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names if a.name == "nlp_transfer" or a.name.startswith("nlp_transfer.")]
        return [n.removeprefix("nlp_transfer").lstrip(".") for n in names]
    if node.level == 0:
        if not (node.module or "").startswith("nlp_transfer"):
            return []
        base = node.module.removeprefix("nlp_transfer").lstrip(".")
    else:
        parts = module.split(".") if module else []
        parts = parts if is_package else parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    out = []
    for alias in node.names:
        full = f"{base}.{alias.name}" if base else alias.name
        out.append(full if full in MODULES else base)
    return out


def _lazy_target(node) -> str | None:
    """The module of a ``lazy("nlp_transfer.x")`` call (``_lazy.lazy``), else None."""
    if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy" and node.args
            and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("nlp_transfer.")):
        return node.args[0].value.removeprefix("nlp_transfer.")
    return None


def _imports() -> dict[str, list[tuple[str, bool, int]]]:
    """module -> [(imported module, at function level, line)]."""
    graph = {}
    for module, path in MODULES.items():
        tree, edges = ast.parse(path.read_text(encoding="utf-8")), []

        def visit(node, in_function: bool):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    visit(ast.Module(body=child.orelse, type_ignores=[]), in_function)  # annotations only: never run
                    continue
                nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    edges.extend((t, in_function, child.lineno) for t in _target(module, path.name == "__init__.py", child)
                                 if t in MODULES and t != module)
                elif _lazy_target(child) in MODULES:  # ``lazy("nlp_transfer.x")``: imported on first use
                    edges.append((_lazy_target(child), True, child.lineno))
                visit(child, nested)

        visit(tree, False)
        graph[module] = edges
    return graph


GRAPH = _imports()


def _heavy_at_import() -> dict[str, bool]:
    """Whether importing a module imports a heavy library at module level (itself, or through its own imports)."""
    direct = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = [a.name for n in tree.body if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module]
        direct[module] = any(name.split(".")[0] in HEAVY for name in names)
    heavy = {}

    def visit(module: str, seen: frozenset) -> bool:
        if module not in heavy:
            heavy[module] = direct[module] or any(
                visit(t, seen | {module}) for t, in_function, _ in GRAPH[module] if not in_function and t not in seen)
        return heavy[module]

    for module in MODULES:
        visit(module, frozenset())
    return heavy


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".") or prefix == "") and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w, _, _ in GRAPH[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            connect(v)
    return out


def test_the_graph_is_read():
    # the parser must see the imports it checks, or every other test here passes vacuously
    assert ("tasks.spec", False) in [(t, f) for t, f, _ in GRAPH["data.files"]] or \
        any(t == "tasks.spec" for t, _, _ in GRAPH["data.tokens"])
    assert any(t == "training.loop" for t, _, _ in GRAPH["training.stages"])
    assert len(MODULES) > 80


def test_no_import_cycles():
    assert _cycles() == [], "import cycles between the package's modules (function-level imports count)"


def test_a_cycle_would_be_found(monkeypatch):
    monkeypatch.setitem(GRAPH, "data.columns", [*GRAPH["data.columns"], ("data.files", True, 1)])
    assert any("data.columns" in c and "data.files" in c for c in _cycles())


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer_of(m) is None] == []


def test_lower_layers_never_import_higher_ones():
    wrong = [f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)}) at line {line}"
             for m, edges in GRAPH.items() for t, _, line in edges if layer_of(t) > layer_of(m)]
    assert wrong == []


@pytest.mark.parametrize("low,high", [("data.files", "tasks"), ("models.build", "strategies"), ("tasks.base", "inference"),
                                      ("training.loop", "training.stages"), ("recipe.build", "training.stages")])
def test_the_order_says_which_is_higher(low, high):
    assert layer_of(low) < layer_of(high)


def test_function_level_imports_only_defer_heavy_libraries():
    """An own module imported inside a function must be one that imports a heavy library (torch, transformers,
    datasets, ...) at module level, into a module that does not: that keeps ``nlp-transfer validate`` and the light
    modules light. Any other function-level import dodges nothing and belongs at the top."""
    heavy = _heavy_at_import()
    needless = [f"{m}:{line} imports {t} inside a function" + (f" ({m} is heavy already)" if heavy[m] else
                                                                 f" ({t} imports nothing heavy)")
                for m, edges in GRAPH.items() for t, in_function, line in edges
                if in_function and (heavy[m] or not heavy[t])]
    assert needless == []


def test_every_module_imports_on_its_own():
    """Importing a module runs its packages' ``__init__`` first (``tasks/__init__.py``, the registry, for
    ``tasks.spec``): a module must import first, on its own, without meeting itself half-imported."""
    code = ("import importlib, sys\n"
            "failed = []\n"
            "for name in sys.argv[1:]:\n"
            "    for loaded in [m for m in sys.modules if m == 'nlp_transfer' or m.startswith('nlp_transfer.')]:\n"
            "        del sys.modules[loaded]\n"
            "    try:\n"
            "        importlib.import_module('nlp_transfer.' + name if name else 'nlp_transfer')\n"
            "    except Exception as exc:\n"
            "        failed.append(f'{name}: {exc!r}')\n"
            "print('FAILED', failed)\n")
    names = [m for m in MODULES if m != "__main__"]
    run = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=600,
                         cwd=PACKAGE.parent)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "FAILED []" in run.stdout, run.stdout[-3000:]

