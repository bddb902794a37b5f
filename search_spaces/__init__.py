"""The sweep spec, its expansion into cells, and stable cell keys. Imports nothing else of augworth.

Names load on first use (optuna's way), so `import search_spaces.cells` needs neither pydantic nor yaml:
the training command line runs where only torch is installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cells import (
        CELL_FIELDS,
        GROUP_COLUMNS,
        KEY_VERSION,
        PROBE_COLUMNS,
        TREATMENT_COLUMNS,
        Cell,
        canonical_json,
        cell_key,
    )
    from .spec import (
        Spec,
        SpecError,
        apply_smoke,
        expand_cells,
        load_spec,
        parse_spec,
        preset_names,
        preset_path,
        read_spec_text,
        resolve_sizes,
        spec_error,
    )

_HOMES = {
    "cells": ("CELL_FIELDS", "GROUP_COLUMNS", "KEY_VERSION", "PROBE_COLUMNS", "TREATMENT_COLUMNS", "Cell",
              "canonical_json", "cell_key"),
    "spec": ("Spec", "SpecError", "apply_smoke", "expand_cells", "load_spec", "parse_spec", "preset_names",
             "preset_path", "read_spec_text", "resolve_sizes", "spec_error"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = ["CELL_FIELDS", "Cell", "GROUP_COLUMNS", "KEY_VERSION", "PROBE_COLUMNS", "Spec", "SpecError",
    "TREATMENT_COLUMNS", "apply_smoke", "canonical_json", "cell_key", "expand_cells", "load_spec", "parse_spec",
    "preset_names", "preset_path", "read_spec_text", "resolve_sizes", "spec_error"]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    globals()[name] = value
    return value
