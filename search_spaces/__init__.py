"""The sweep spec, its expansion into cells, and stable cell keys. Imports nothing else of augworth.

Names load on first use (optuna's way), so `import search_spaces.cells` needs neither pydantic nor yaml:
the training command line runs where only torch is installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports

if TYPE_CHECKING:
    from .cells import (
        CELL_FIELDS,
        GROUP_COLUMNS,
        KEY_VERSION,
        LABEL_COLUMNS,
        PROBE_COLUMNS,
        TREATMENT_COLUMNS,
        Cell,
        canonical_json,
        cell_key,
        treatment_label,
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
    "cells": ("CELL_FIELDS", "GROUP_COLUMNS", "KEY_VERSION", "LABEL_COLUMNS", "PROBE_COLUMNS", "TREATMENT_COLUMNS",
              "Cell", "canonical_json", "cell_key", "treatment_label"),
    "spec": ("Spec", "SpecError", "apply_smoke", "expand_cells", "load_spec", "parse_spec", "preset_names",
             "preset_path", "read_spec_text", "resolve_sizes", "spec_error"),
}
__all__ = ["CELL_FIELDS", "Cell", "GROUP_COLUMNS", "KEY_VERSION", "LABEL_COLUMNS", "PROBE_COLUMNS", "Spec",
    "SpecError", "TREATMENT_COLUMNS", "apply_smoke", "canonical_json", "cell_key", "expand_cells", "load_spec",
    "parse_spec", "preset_names", "preset_path", "read_spec_text", "resolve_sizes", "spec_error", "treatment_label"]

__getattr__ = lazy_exports(__name__, _HOMES)
