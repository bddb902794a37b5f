"""What a design is asked (`design.py`): its targets, tolerance, budget, start and the seeds an interval needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from augworth.analysis.intervals import FEW_SEEDS, MEASURED_COVERAGE

COVERAGE_NEEDED = 0.90  # the coverage of a nominal 95% interval a stopping rule may rest on


def min_seeds_for_coverage(coverage: float = COVERAGE_NEEDED, kind: str = "v") -> int:
    """The fewest seeds at which the measured coverage of a 95% interval reaches `coverage`
    (`intervals.MEASURED_COVERAGE`, `python -m bench.intervals --seeds`); FEW_SEEDS where none does."""
    enough = [n for n, held in sorted(MEASURED_COVERAGE[kind].items()) if held >= coverage]
    return enough[0] if enough else FEW_SEEDS


@dataclass(frozen=True)
class Target:
    """v of `treatment` (as the tables print it, e.g. 'crop(2)', or an augmentation's name where it names one
    treatment of the grid) against the reference at training-set size `size` (of the grid or between)."""

    treatment: str
    size: float


@dataclass(frozen=True)
class Design:
    targets: tuple[Target, ...]
    reference: str = "none"
    tolerance: float = 0.10  # resolved: the interval's half-width ≤ tolerance × (x + v) ...
    floor: float = 1.0  # ... or ≤ this many samples, so that v ≈ 0 at small x can resolve
    eval_set: str = "test"
    budget_cells: int | None = None
    budget_seconds: float | None = None  # the cells' summed training seconds
    start_sizes: tuple[float, ...] = ()  # () : 4 log-spaced sizes of the grid
    start_seeds: int = 2
    explore: float = 0.1
    seed: int = 0
    level: float = 0.95
    n_bootstrap: int = 200
    check_top: int = 3
    min_seeds: int = field(default_factory=min_seeds_for_coverage)
