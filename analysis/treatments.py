"""Which rows are the reference, and how treatments are named: what the exchange rates, the comparisons, the
paper's questions and the search's best points all decide the same way."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from augworth.results import TREATMENT_COLUMNS
from augworth.search_spaces.cells import LABEL_COLUMNS, treatment_label

Key = tuple[Hashable, ...]


def row_key(values: Sequence[Any]) -> Key:
    """A hashable key of a row's values in which every missing value (None, NaN, NA) is None, so they match each
    other, and numpy scalars are Python's (2 and 2.0 are one key, as in any tuple)."""
    return tuple(None if pd.isna(v) else (v.item() if isinstance(v, np.generic) else v) for v in values)

# The reference is trained plainly: its other treatment columns at their neutral values (missing = neutral,
# as in rows written before the column existed). So `none` with k views per batch, or `none` inside an
# invariant model, is a treatment compared against the plain model, as the paper's §4 and §5 compare them.
_NEUTRAL_TREATMENT = {"views": "random", "views_r": None, "views_first_clean": False, "invariance": "none"}


def reference_mask(fits: pd.DataFrame, reference: str) -> np.ndarray:
    """augmentation == reference, trained plainly, per fit; a missing augmentation being no match."""
    mask = fits["augmentation"].astype(object).eq(reference).to_numpy(dtype=bool, copy=True)
    for name, neutral in _NEUTRAL_TREATMENT.items():
        if name in fits.columns:
            values = fits[name].astype(object)
            plain = values.isna() if neutral is None else values.isna() | values.eq(neutral)
            mask &= plain.to_numpy(dtype=bool)
    return mask


def treatment_labels(results: pd.DataFrame, shown: pd.Series | None = None) -> pd.Series:
    """Each row's treatment as the tables print it: 'crop(2)', with the treatment's label columns that vary among
    the `shown` rows (default: all) in brackets: 'crop(2) [fixed 4]'. Group columns (model, width, ...) are
    left out: a comparison is made within each group, and its rows name the group."""
    columns = [c for c in TREATMENT_COLUMNS if c in results.columns]
    among = results if shown is None else results[shown]
    varying = [c for c in LABEL_COLUMNS if c in columns and among[c].astype(str).nunique() > 1]
    return results[[c for c in results.columns if c in set(columns) | set(varying)]].apply(
        lambda row: treatment_label(row.to_dict(), varying), axis=1)
