"""Package namespaces whose names load on first use (optuna's way): importing a package stays cheap, and a
light submodule (`search_spaces.cells`, `results.rows`) never pulls in its heavy siblings."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str, homes: Mapping[str, Sequence[str]]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports each name from its module in `homes` on first use."""
    module_of = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module_of[name]}"), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
