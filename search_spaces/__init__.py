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
        PROBE_NAMES,
        TREATMENT_COLUMNS,
        Cell,
        ProbeSettings,
        canonical_json,
        cell_key,
        treatment_label,
    )
    from .grid import expand_cells, expand_studies, grid_points, grid_size, resolve_sizes
    from .preset_files import preset_names, preset_path
    from .search import SEARCHABLE, SearchSpec, Study, confirm_eval_set, confirm_seeds, searched_policies
    from .spec import (
        Spec,
        SpecError,
        apply_smoke,
        load_spec,
        parse_spec,
        read_spec_text,
        spec_error,
    )

_HOMES = {
    "cells": ("CELL_FIELDS", "GROUP_COLUMNS", "KEY_VERSION", "LABEL_COLUMNS", "PROBE_COLUMNS", "PROBE_NAMES",
              "TREATMENT_COLUMNS", "Cell", "ProbeSettings", "canonical_json", "cell_key", "treatment_label"),
    "grid": ("expand_cells", "expand_studies", "grid_points", "grid_size", "resolve_sizes"),
    "search": ("SEARCHABLE", "SearchSpec", "Study", "confirm_eval_set", "confirm_seeds", "searched_policies"),
    "preset_files": ("preset_names", "preset_path"),
    "spec": ("Spec", "SpecError", "apply_smoke", "load_spec", "parse_spec", "read_spec_text", "spec_error"),
}
__all__ = [
    "apply_smoke", "canonical_json", "Cell", "CELL_FIELDS", "cell_key", "expand_cells", "expand_studies", "grid_points",
    "grid_size", "GROUP_COLUMNS", "KEY_VERSION", "LABEL_COLUMNS", "load_spec", "parse_spec", "preset_names",
    "preset_path", "PROBE_COLUMNS", "PROBE_NAMES", "ProbeSettings", "read_spec_text", "resolve_sizes", "Spec",
    "spec_error", "SpecError", "TREATMENT_COLUMNS", "treatment_label", "SEARCHABLE", "SearchSpec", "Study",
    "searched_policies", "confirm_eval_set", "confirm_seeds",
]

__getattr__ = lazy_exports(__name__, _HOMES)
