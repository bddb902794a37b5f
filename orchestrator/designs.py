"""A sweep's `design:` block as the analysis's `Design`, checked against the expanded grid, and where it stands
(`status`, the end of a run). No Ray, no torch: the plan and `status` use it; `design_tune.py` runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from augworth.results import GROUP_COLUMNS, Store
from augworth.search_spaces import Cell, Spec, SpecError

if TYPE_CHECKING:
    import pandas as pd

    from augworth.analysis.design import Design, DesignState


def design_of(spec: Spec) -> Design:
    from augworth.analysis.design import Design, Target

    block = spec.design
    assert block is not None
    return Design(
        targets=tuple(Target(t.treatment, float(size)) for t in block.targets for size in t.sizes),
        reference=block.reference, tolerance=block.tolerance, floor=block.floor, eval_set=block.eval_set,
        budget_cells=block.budget.cells, budget_seconds=block.budget.hours * 3600 if block.budget.hours else None,
        start_sizes=tuple(float(s) for s in block.start.sizes or ()), start_seeds=block.start.seeds,
        explore=block.explore, seed=block.seed)


def candidate_cells(spec: Spec, cells: list[Cell] | list[dict[str, Any]]) -> pd.DataFrame:
    """The grid's cells the design may train (its candidate sizes and seeds), one row each: cell_key and fields."""
    import pandas as pd

    block = spec.design
    assert block is not None
    rows = [c if isinstance(c, dict) else {"cell_key": c.cell_key} | c.to_dict() for c in cells]
    frame = pd.DataFrame(rows)
    return frame[frame["data_size"].isin(block.sizes(spec)) & frame["seed"].isin(block.seeds(spec))].reset_index(
        drop=True)


def check_design_grid(spec: Spec, cells: list[Cell], source: str) -> None:
    """The targets against the expanded grid: each names one treatment, and the grid is one group (the design's
    curves are per treatment of one model, width, data set, ...). SpecError naming the key otherwise."""
    from augworth.analysis.design_arms import resolve_arms

    grid = candidate_cells(spec, cells)
    varying = [c for c in GROUP_COLUMNS if c in grid and grid[c].astype(str).nunique() > 1]
    if varying:
        raise SpecError(f"a design runs on one group of the grid; this one varies in {', '.join(varying)}",
                        source=source, path="design")
    try:
        resolve_arms(grid, design_of(spec))
    except ValueError as exc:
        path, _, reason = str(exc).partition(": ")
        raise SpecError(reason, source=source, path=path) from None


def design_now(store: Store, spec: Spec) -> DesignState:
    """Where the design stands on what the store holds."""
    from augworth.analysis.design import design_state
    from augworth.results import read_results

    grid = store.read_grid(spec.name)
    cells = grid.to_pylist() if grid is not None else []
    results = read_results(store, spec.name, final_only=True, grid_only=True)
    return design_state(results, candidate_cells(spec, cells), design_of(spec))


def stop_line(state: DesignState) -> str:
    spent = f"{state.cells} cells, {state.seconds / 3600:.2f} training hours spent"
    if state.stop == "resolved":
        return f"design: every target resolved ({spent})"
    open_targets = int((~state.targets["resolved"]).sum())
    if state.stop == "budget":
        return f"design: the budget is spent with {open_targets} target(s) not resolved ({spent})"
    return f"design: {open_targets} target(s) not resolved yet ({spent})"


def target_lines(state: DesignState) -> list[str]:
    """A line per target: x + v [interval] against its tolerance, on how many seeds, resolved or not."""
    lines = []
    for t in state.targets.itertuples():
        interval = f"[{t.low:,.0f}, {t.high:,.0f}]" if t.low == t.low else "[no interval yet]"
        verdict = "resolved" if t.resolved else "past the extrapolation limit" if t.past_limit and t.high == t.high \
            else "the curve families disagree beyond the measured sizes" if t.families_disagree \
            else (f"±{t.half_width:,.0f} > ±{t.allowed:,.0f}" if t.half_width == t.half_width else "open")
        lines.append(f"{t.treatment} at x = {t.size:g}: x + v = {t.x_equiv:,.0f} {interval}, {verdict}, "
                     f"{t.seeds} seeds shared with the reference")
    return lines
