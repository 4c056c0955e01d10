"""Heavy libraries imported on first use.

Validating a recipe (``nlp-transfer validate``) reads the strategy and task modules, whose
hooks use torch, transformers and datasets. Importing those takes seconds; the modules on the
validation path bind them through ``lazy`` instead, so the import happens the first time an
attribute is used (``torch.no_grad()``), never at import time.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """A stand-in for a module that imports it when one of its attributes is first read."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        if attr.startswith("__"):  # copy, pickle and inspect probe dunders; don't import for them
            raise AttributeError(attr)
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{' (imported)' if self._module is not None else ''}>"


def lazy(name: str) -> LazyModule:
    """``name`` as a module that is imported on first attribute access."""
    return LazyModule(name)
