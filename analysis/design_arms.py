"""The design's arms and costs (`design.py`): which rows belong to a target's treatment or to the reference, what a
cell costs, how many seeds an interval needs, and which cells a target short of seeds lacks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from augworth.analysis.design_estimates import REFERENCE_ARM
from augworth.analysis.design_types import Design
from augworth.analysis.treatments import Key, reference_mask, row_key, treatment_labels
from augworth.results import TREATMENT_COLUMNS


def _keys(frame: pd.DataFrame, columns: list[str]) -> list[Key]:
    return [row_key(row) for row in frame[columns].itertuples(index=False, name=None)]


@dataclass(frozen=True)
class Arms:
    """The design's arms in a grid: treatment key (the grid's treatment columns' values) -> arm (the reference,
    or a target's treatment as the tables label it), and (arm, size) per target."""

    columns: list[str]
    by_key: dict[Key, str]
    targets: list[tuple[str, float]]

    def of(self, frame: pd.DataFrame) -> pd.Series:
        """Each row's arm (None: a treatment the design does not use)."""
        frame = frame.assign(**{c: None for c in self.columns if c not in frame.columns})
        return pd.Series([self.by_key.get(k) for k in _keys(frame, self.columns)], index=frame.index, dtype=object)


def resolve_arms(grid: pd.DataFrame, design: Design) -> Arms:
    """The arms of `grid`; ValueError naming the target (or the reference) that names no single treatment of it."""
    columns = [c for c in TREATMENT_COLUMNS if c in grid.columns]
    distinct = grid[columns].drop_duplicates(ignore_index=True)
    keys = _keys(distinct, columns)
    label_of = dict(zip(keys, treatment_labels(distinct), strict=True))
    reference = {k for k, is_ref in zip(keys, reference_mask(distinct, design.reference), strict=True) if is_ref}
    if len(reference) != 1:
        raise ValueError(f"design: the grid has {len(reference)} treatments that are the reference "
                         f"{design.reference!r} trained plainly; the design needs exactly one")
    arms = {reference.pop(): REFERENCE_ARM}
    augmentation = columns.index("augmentation")
    targets = []
    for i, target in enumerate(design.targets):
        matches = {k for k, label in label_of.items() if label == target.treatment} or {
            k for k in label_of if k[augmentation] == target.treatment}
        if len(matches) != 1 or arms.get(next(iter(matches))) == REFERENCE_ARM:
            what = "the reference" if len(matches) == 1 else f"{len(matches)} treatments"
            have = ", ".join(sorted(set(label_of.values())))
            raise ValueError(f"design.targets[{i}].treatment: {target.treatment!r} names {what} of the grid "
                             f"(have: {have})")
        key = matches.pop()
        arms[key] = label_of[key]
        targets.append((label_of[key], float(target.size)))
    return Arms(columns, arms, targets)


def cost_model(points: pd.DataFrame) -> Callable[[float], float]:
    """Seconds a cell costs against its size, log-log on the sweep's own cells (exponent in [0, 1.5]); a
    constant before two sizes have a measured cost."""
    if "train_seconds" not in points:
        return lambda size: 1.0
    cells = points.groupby("cell_key").agg(size=("data_size", "first"), seconds=("train_seconds", "max"))
    cells = cells[cells["seconds"] > 0]
    if cells["size"].nunique() < 2:
        mean = float(cells["seconds"].mean()) if len(cells) else 1.0
        return lambda size: mean
    beta, alpha = np.polyfit(np.log(cells["size"].to_numpy(float)), np.log(cells["seconds"].to_numpy(float)), 1)
    beta = float(np.clip(beta, 0.0, 1.5))
    alpha = float(np.mean(np.log(cells["seconds"].to_numpy(float)) - beta * np.log(cells["size"].to_numpy(float))))
    return lambda size: float(np.exp(alpha + beta * np.log(size)))


def _bracket(sizes: np.ndarray, x: float) -> list[float]:
    if sizes.size == 0 or not np.isfinite(x):
        return [float(sizes.max())] if sizes.size else []
    below, above = sizes[sizes <= x], sizes[sizes >= x]
    return sorted({float(below.max()) if below.size else float(sizes.min()),
                   float(above.min()) if above.size else float(sizes.max())})


def supporting_pairs(open_targets: pd.DataFrame, counted: pd.DataFrame, design: Design) -> list[tuple[str, float]]:
    """(arm, size) pairs short of `design.min_seeds` seeds that a target narrow enough but on too few seeds rests
    on: its treatment at the sizes around x, the reference at the sizes around x + v."""
    pairs: list[tuple[str, float]] = []
    seeds = counted.groupby(["arm", counted["data_size"].astype(float)])["seed"].nunique()
    for target in open_targets.itertuples():
        narrow = np.isfinite(target.half_width) and target.half_width <= target.allowed
        if not narrow or target.seeds >= design.min_seeds:
            continue
        for arm, x in ((str(target.treatment), float(target.size)), (REFERENCE_ARM, float(target.x_equiv))):
            sizes = np.sort(counted.loc[counted["arm"] == arm, "data_size"].astype(float).unique())
            for size in _bracket(sizes, x):
                if seeds.get((arm, size), 0) < design.min_seeds and (arm, size) not in pairs:
                    pairs.append((arm, size))
    return pairs
