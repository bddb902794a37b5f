"""Adaptive experimental design: which cells to train next so that v's interval at the sizes a user asks about
shrinks fastest per unit of cost, and when to stop.

A plain function of the stored rows, the grid's cells and the `design:` block (no Ray, no torch), so a user or a
benchmark replays it against any dense grid of finished cells:

    from augworth.analysis.design import Design, Target, design_state, next_cells
    design = Design(targets=(Target("crop(2)", 100), Target("crop(2)", 400)), tolerance=0.10)
    next_cells(results, grid, design, running=["a1b2..."], n=2)   # cell keys to train next
    design_state(results, grid, design).stop                       # None, "resolved" or "budget"

`results`: the stored rows (any eval sets; the final rows of `design.eval_set` count); `grid`: the cells the
design may choose from (`cell_key`, the treatment columns, `data_size`, `seed`: the sweep's expanded grid).

How it decides (the estimates and the score are `design_estimates.py`'s):
1. A paired start: every target's treatment and the reference at the start sizes (default 4 log-spaced sizes of
   the grid) × the first `start_seeds` seeds, at the same (size, seed), so subset and initialisation noise
   cancels in v.
2. Then one cell at a time, counting cells running or already picked as done: a share `explore` of picks goes
   to a uniformly drawn (treatment, size) as a guard against a wrong curve family; the rest to the (treatment,
   size) whose linearised drop in Var(log(x + v)) over the unresolved targets, in units of each target's
   tolerance, is largest per unit of cost (seconds per cell, fitted on the sweep's own cells against size);
   the top `check_top` by that score are checked by refitting the bootstrap with the cell imputed at its
   fitted accuracy. A target whose interval is narrow enough but rests on too few seeds gets the cells it
   lacks at its supporting sizes first. The seed is the lowest one the other arm has at that size (pairing),
   else the lowest unused one.
3. Stop when every target's interval is within tolerance, on at least `min_seeds` shared seeds (the fewest
   whose measured coverage of the 95% interval reaches 0.90: `intervals.MEASURED_COVERAGE`), its upper end
   within the extrapolation limit (2 × the reference's largest measured size, where the analysis stops printing
   numbers), where x + v lies past the measured sizes only if the other curve families that fit the reference
   (pure power law, exponential: `families.py`) put it inside the interval too, at this check and the one
   before it (the store less its last finished cell); or at the budget.

Every choice is a deterministic function of the rows, the running cells and `design.seed`: a driver restarted
after a kill continues where the store says.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from augworth.analysis.design_arms import Arms, cost_model, resolve_arms, supporting_pairs
from augworth.analysis.design_estimates import (
    REFERENCE_ARM,
    ArmFits,
    PairCells,
    family_x_equiv,
    fit_arms,
    log_gradient,
    seed_noise,
    target_intervals,
)
from augworth.analysis.design_types import Design, Target

__all__ = ["Design", "DesignState", "Target", "design_points", "design_state", "next_cells"]
from augworth.analysis.fit import MIN_SIZES, power_law
from augworth.analysis.verdicts import EXTRAPOLATION_LIMIT


@dataclass(frozen=True)
class DesignState:
    """`targets`: per target its treatment, size, x + v with its interval, half_width, allowed (the half-width
    that counts as resolved), seeds (shared with the reference), resolved. `cells`, `seconds`: spent so far.
    `stop`: None (go on), "resolved" or "budget"."""

    targets: pd.DataFrame
    cells: int
    seconds: float
    stop: str | None


def design_state(results: pd.DataFrame, grid: pd.DataFrame, design: Design) -> DesignState:
    return _state(results, resolve_arms(grid, design), design)


def _state(results: pd.DataFrame, arms: Arms, design: Design) -> DesignState:
    points = design_points(results, arms, design)
    targets = _resolution(points, arms, design)
    done = points.drop_duplicates("cell_key")
    cells, seconds = len(done), float(done["train_seconds"].fillna(0.0).sum()) if "train_seconds" in done else 0.0
    stop = None
    if targets["resolved"].all() and _resolution(_less_last_cell(points), arms, design)["resolved"].all():
        stop = "resolved"
    elif (design.budget_cells is not None and cells >= design.budget_cells) or (
            design.budget_seconds is not None and seconds >= design.budget_seconds):
        stop = "budget"
    return DesignState(targets, cells, seconds, stop)


def next_cells(results: pd.DataFrame, grid: pd.DataFrame, design: Design, *, running: Collection[str] = (),
               n: int = 1) -> list[str]:
    """The cell keys to train next (at most n; fewer when the budget or the grid runs out; none once the design
    has stopped). Cells in `running` count as done but are never chosen again."""
    arms = resolve_arms(grid, design)
    state = _state(results, arms, design)
    if state.stop is not None:
        return []
    if design.budget_cells is not None:
        n = min(n, design.budget_cells - state.cells - len(running))
    points = design_points(results, arms, design)
    cells = grid.assign(arm=arms.of(grid))
    cells = cells[cells["arm"].notna()]
    taken = set(points["cell_key"]) | set(running)
    counted = cells[cells["cell_key"].isin(taken)]  # done or running: their sizes inform the score
    free = cells[~cells["cell_key"].isin(taken)]
    picks: list[str] = []
    picks.extend(_start_cells(free, cells, design)[:max(n, 0)])
    fits = fit_arms(points)  # the stored rows do not change while this call picks
    while len(picks) < n:
        free = free[~free["cell_key"].isin(picks)]
        if free.empty:
            break
        counted_now = pd.concat([counted, cells[cells["cell_key"].isin(picks)]])
        rng = np.random.default_rng([design.seed, len(taken) + len(picks)])
        chosen = _pick(points, fits, counted_now, free, state, design, rng)
        if chosen is None:
            break
        arm, size, seed = chosen
        picks.append(_seed_for(free, counted_now, arm, size)[0] if seed is None else _cell(free, arm, size, seed))
    return picks


def design_points(results: pd.DataFrame, arms: Arms, design: Design) -> pd.DataFrame:
    """The final rows of the design's eval set that belong to an arm: arm, data_size, seed, accuracy, cell_key
    (and train_seconds, created_at where the rows have them)."""
    rows = results[results["eval_set"] == design.eval_set] if "eval_set" in results else results
    if "final" in rows:
        rows = rows[rows["final"].astype("boolean").fillna(False).to_numpy(dtype=bool)]
    rows = rows[rows["accuracy"].notna()]
    rows = rows.assign(arm=arms.of(rows))
    keep = [c for c in ("arm", "data_size", "seed", "accuracy", "cell_key", "train_seconds", "created_at")
            if c in rows]
    return rows.loc[rows["arm"].notna(), keep].reset_index(drop=True)


def _resolution(points: pd.DataFrame, arms: Arms, design: Design) -> pd.DataFrame:
    fits = fit_arms(points)
    table = target_intervals(points, arms.targets, fits, level=design.level, n_bootstrap=design.n_bootstrap,
                             seed=design.seed)
    table = table.rename(columns={"arm": "treatment"})
    table["half_width"] = (table["high"] - table["low"]) / 2.0
    table["allowed"] = np.maximum(design.tolerance * table["x_equiv"], design.floor)
    finite = np.isfinite(table["half_width"]) & np.isfinite(table["allowed"])
    # past the extrapolation limit the analysis prints "> N", not the number: no interval there resolves a target
    measured = points.loc[points["arm"] == REFERENCE_ARM, "data_size"]
    table["past_limit"] = ~(table["high"] <= EXTRAPOLATION_LIMIT * (measured.max() if len(measured) else np.nan))
    table["families_disagree"] = _families_disagree(points, arms.targets, fits, table,
                                                    measured.max() if len(measured) else np.nan)
    table["resolved"] = finite & (table["half_width"] <= table["allowed"]) & (table["seeds"] >= design.min_seeds) & (
        ~table["past_limit"]) & ~table["families_disagree"]
    return table


def _families_disagree(points: pd.DataFrame, targets: list[tuple[str, float]], fits: ArmFits, table: pd.DataFrame,
                       largest: float) -> pd.Series:
    """Beyond the measured sizes x + v is the curve family's, not the data's: a target whose x + v (by any family
    that fits the reference) lies past the reference's largest measured size resolves only where every other
    fitting family's x + v falls inside its interval, and the paper's family fits the reference at all."""
    other = family_x_equiv(points, targets, fits)
    beyond = (table["x_equiv"] > largest) | (other[["pure_power", "exponential"]].max(axis=1) > largest)
    outside = pd.Series(False, index=table.index)
    for family in ("pure_power", "exponential"):
        xv = other[family]
        outside |= xv.notna() & ((xv < table["low"]) | (xv > table["high"]))
    return beyond & (outside | ~other["power_fits"].astype(bool))


def _less_last_cell(points: pd.DataFrame) -> pd.DataFrame:
    """The store as the previous check saw it: without the cell that finished last."""
    if points.empty:
        return points
    order = points.sort_values("created_at", kind="stable") if "created_at" in points else points
    return points[points["cell_key"] != order["cell_key"].iloc[-1]]


def _start_cells(free: pd.DataFrame, cells: pd.DataFrame, design: Design) -> list[str]:
    sizes = np.sort(cells["data_size"].unique().astype(float))
    wanted = np.asarray(design.start_sizes, dtype=float) if design.start_sizes else np.geomspace(
        sizes[0], sizes[-1], min(4, sizes.size))
    start_sizes = {float(sizes[np.argmin(np.abs(np.log(sizes) - np.log(w)))]) for w in wanted}
    start_seeds = sorted(cells["seed"].unique())[:design.start_seeds]
    start = free[free["data_size"].astype(float).isin(start_sizes) & free["seed"].isin(start_seeds)]
    order = {s: i for i, s in enumerate(start_seeds)}
    start = start.assign(_seed=start["seed"].map(order)).sort_values(["_seed", "data_size", "arm"], kind="stable")
    return start["cell_key"].tolist()


Pick = tuple[str, float, int | None]  # (arm, size, seed); seed None: the pairing rule's (`_seed_for`)


def _pick(points: pd.DataFrame, fits: ArmFits, counted: pd.DataFrame, free: pd.DataFrame, state: DesignState,
          design: Design, rng: np.random.Generator) -> Pick | None:
    pairs = sorted({(str(a), float(s)) for a, s in zip(free["arm"], free["data_size"], strict=True)})
    if not pairs:
        return None
    if rng.random() < design.explore:
        return (*pairs[int(rng.integers(len(pairs)))], None)
    open_targets = state.targets[~state.targets["resolved"]]
    for pair in supporting_pairs(open_targets, counted, design):  # narrow enough, but on too few seeds
        if pair in pairs:
            return (*pair, None)
    sizes_of = counted.groupby("arm")["data_size"].nunique()
    short = [p for p in pairs if not fits.ok(p[0]) and sizes_of.get(p[0], 0) < MIN_SIZES]
    if short:  # an arm without a curve, nor the sizes for one: the sizes it lacks first
        have = set(zip(counted["arm"], counted["data_size"].astype(float), strict=True))
        return (*min(short, key=lambda p: ((p in have), p[1])), None)
    in_play = set(open_targets["treatment"]) | {REFERENCE_ARM}
    if open_targets.empty or not all(fits.ok(arm) for arm in in_play):
        return (*_fewest(pairs, counted), None)  # curves pending, or only the second check or seeds left: spread
    scores = _linearised_scores(points, counted, free, open_targets, design, fits)
    ranked = sorted(scores, key=lambda t: (-scores[t], t))
    if not ranked or scores[ranked[0]] <= 0:
        return (*_fewest(pairs, counted), None)
    if design.check_top > 1 and design.n_bootstrap:
        return _bootstrap_check(points, ranked[:design.check_top], open_targets, design, fits)
    return ranked[0]


def _fewest(pairs: list[tuple[str, float]], counted: pd.DataFrame) -> tuple[str, float]:
    """The (arm, size) with the fewest cells done or running (the uniform grid's next cell)."""
    count = counted.groupby(["arm", counted["data_size"].astype(float)]).size()
    return min(pairs, key=lambda p: (int(count.get(p, 0)), p[1], p[0]))


def _candidates(counted: pd.DataFrame, free: pd.DataFrame) -> list[tuple[str, float, int]]:
    """The free (arm, size, seed) cells worth scoring: every seed that has cells, and per (arm, size) the lowest
    seed that has none (all such seeds score alike)."""
    used = set(counted["seed"])
    out, fresh = [], set()
    for arm, size, seed in sorted(zip(free["arm"], free["data_size"].astype(float), free["seed"], strict=True)):
        if seed in used:
            out.append((str(arm), float(size), int(seed)))
        elif (arm, size) not in fresh:
            fresh.add((arm, size))
            out.append((str(arm), float(size), int(seed)))
    return out


def _linearised_scores(points: pd.DataFrame, counted: pd.DataFrame, free: pd.DataFrame, open_targets: pd.DataFrame,
                       design: Design, fits: ArmFits) -> dict[tuple[str, float, int], float]:
    """Per free cell: the drop of Var(log(x + v)) over the open targets, in units of each target's tolerance, per
    unit of cost (`design_estimates.py` says how)."""
    noise, cost = seed_noise(points, fits), cost_model(points)
    z = float(stats.norm.ppf(0.5 + design.level / 2.0))
    candidates = _candidates(counted, free)
    scores = dict.fromkeys(candidates, 0.0)
    for target in open_targets.itertuples():
        arm, x = str(target.treatment), float(target.size)
        index = {arm: 0, REFERENCE_ARM: 1}
        params = (fits.params[arm], fits.params[REFERENCE_ARM])
        mine = counted[counted["arm"].isin(index)]
        pair = PairCells.of([(index[a], float(size), int(seed)) for a, size, seed in zip(
            mine["arm"], mine["data_size"], mine["seed"], strict=True)], params, noise)
        grad = np.concatenate(log_gradient(x, *params))
        current = pair.variance(grad)
        if np.isfinite(target.x_equiv) and target.x_equiv > 0:
            unit = (math.log1p(float(target.allowed) / float(target.x_equiv)) / z) ** 2
        else:
            unit = max(current, 1e-12)  # x + v unbounded by the fit: the gap's own variance
        for cell in candidates:
            if cell[0] in index:
                scores[cell] += (current - pair.variance(grad, (index[cell[0]], cell[1], cell[2]))) / unit
    return {cell: score / cost(cell[1]) for cell, score in scores.items()}


def _bootstrap_check(points: pd.DataFrame, top: list[tuple[str, float, int]], open_targets: pd.DataFrame,
                     design: Design, fits: ArmFits) -> Pick:
    """Of the linearised score's top cells, the one that, imputed at its fitted accuracy, narrows the open targets'
    bootstrap intervals most per unit of cost."""
    cost = cost_model(points)
    targets = [(str(t.treatment), float(t.size)) for t in open_targets.itertuples()]
    allowed = open_targets["allowed"].to_numpy(float)

    def log_width(table: pd.DataFrame) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            width = np.log(table["high"].to_numpy(float)) - np.log(table["low"].to_numpy(float))
        return np.minimum(np.nan_to_num(width, nan=10.0, posinf=10.0), 10.0)

    before = log_width(target_intervals(points, targets, fits, level=design.level, n_bootstrap=design.n_bootstrap,
                                        seed=design.seed))
    weight = 1.0 / np.maximum(np.log1p(allowed / np.maximum(open_targets["x_equiv"].to_numpy(float), 1e-12)), 1e-6)
    best: Pick = top[0]
    best_gain = -np.inf
    for arm, size, seed in top:
        accuracy = 1.0 - float(power_law(size, *fits.params[arm]))
        imputed = pd.concat([points, pd.DataFrame([{"arm": arm, "data_size": size, "seed": seed,
                                                    "accuracy": accuracy, "cell_key": "\x00imputed"}])],
                            ignore_index=True)
        after = log_width(target_intervals(imputed, targets, fits, level=design.level,
                                           n_bootstrap=design.n_bootstrap, seed=design.seed))
        gain = float(np.sum((before - after) * weight)) / cost(size)
        if gain > best_gain:
            best, best_gain = (arm, size, seed), gain
    return best


def _cell(free: pd.DataFrame, arm: str, size: float, seed: int) -> str:
    row = free[(free["arm"] == arm) & (free["data_size"].astype(float) == size) & (free["seed"] == seed)]
    return str(row["cell_key"].iloc[0])


def _seed_for(free: pd.DataFrame, counted: pd.DataFrame, arm: str, size: float) -> tuple[str, int]:
    """The free cell of (arm, size) whose seed the other arms already have at that size (pairing), else the
    lowest seed."""
    mine = free[(free["arm"] == arm) & (free["data_size"].astype(float) == size)]
    partners = set(counted.loc[(counted["arm"] != arm) & (counted["data_size"].astype(float) == size), "seed"])
    paired = mine[mine["seed"].isin(partners)]
    chosen = (paired if not paired.empty else mine).sort_values("seed", kind="stable")
    return str(chosen["cell_key"].iloc[0]), int(chosen["seed"].iloc[0])
