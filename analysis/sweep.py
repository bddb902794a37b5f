"""One analysis of a sweep, as the command line (`analyze`, `demo`), the report and a notebook run it:
read the grid's final rows, check the request against them, fit and take the exchange rates, and hand back a
typed result that tables, pictures and the report are drawn from.

    from augworth.analysis import analyze
    result = analyze("augworth-store", "demo")          # SweepAnalysis
    result.rates_on("test")                             # one row per (treatment, size): v, its interval, flags
    result.draw("figures/")                             # the scaling and effective-samples pictures
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas and pyarrow load on first use: the command line imports this module at start
    import pandas as pd

    from augworth.results import Store

DEFAULT_BOOTSTRAP = 1000  # resamples: the expanded interval's tail at 10 seeds (0.85%) is then ~8 replicates


class AnalysisInputError(ValueError):
    """A request the sweep's results cannot answer; its message is one line naming the option or the sweep."""


@dataclass(frozen=True)
class SweepAnalysis:
    """The exchange rates of one sweep's grid and what they were computed from.

    `results`: the final rows the fits saw (the grid only: a search's points are no grid). `rates`:
    `exchange_rates`' frame (its docstring lists the columns). `eval_sets`: those analysed, the in-distribution
    one ("test") first. `notes`: the warnings the fits raised (few seeds, fits at a bound), as text.
    """

    sweep: str
    reference: str
    results: pd.DataFrame
    rates: pd.DataFrame
    eval_sets: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def in_distribution(self) -> str:
        return self.eval_sets[0]

    def rates_on(self, eval_set: str) -> pd.DataFrame:
        return self.rates[self.rates["eval_set"] == eval_set]

    def shift_lines(self) -> list[str]:
        """A line per shifted eval set: each treatment's v [95% CI] at the smallest size."""
        from .tables import shift_lines

        return shift_lines(self.rates, self.in_distribution)

    def draw(self, folder: str | Path) -> dict[str, tuple[Path, Path]]:
        """eval set -> (scaling curves, effective samples) pictures, written into `folder` (made if missing)."""
        from .plots import plot_effective_samples, plot_scaling_curves

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return {name: (plot_scaling_curves(self.results, self.rates, folder / f"scaling_{name}.png", eval_set=name),
                       plot_effective_samples(self.rates, folder / f"effective_samples_{name}.png", eval_set=name))
                for name in self.eval_sets}


def sweep_results(store: Store | str, sweep: str, *, reference: str, eval_set: str | None = None
                  ) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The grid's final rows (of `eval_set` alone when given) and the eval sets, in-distribution first; an
    `AnalysisInputError` when there are none, or the eval set or the reference has no rows."""
    from augworth.results import Store, read_results

    opened = store if isinstance(store, Store) else Store(store)
    results = read_results(opened, sweep, grid_only=True, final_only=True)
    if results.empty:
        raise AnalysisInputError(f"sweep {sweep!r} has no finished cells yet")
    sets = tuple(sorted(results["eval_set"].unique(), key=lambda name: (name != "test", name)))
    if eval_set is not None:
        if eval_set not in sets:
            raise AnalysisInputError(f"--eval-set {eval_set!r} is not in the results (have: {', '.join(sets)})")
        results, sets = results[results["eval_set"] == eval_set], (eval_set,)
    if reference not in set(results["augmentation"]):
        raise AnalysisInputError(f"--reference {reference!r} has no results in sweep {sweep!r}")
    return results, sets


def analyze(store: Store | str, sweep: str, *, reference: str = "none", eval_set: str | None = None,
            n_bootstrap: int = DEFAULT_BOOTSTRAP, seed: int = 0, weights: str = "equal") -> SweepAnalysis:
    """The exchange rates of `sweep` in `store` against `reference`, with intervals from `n_bootstrap`
    resamples of whole seeds (0: none). The fits' warnings are raised again here, and kept in `notes`."""
    from .exchange import WEIGHTINGS, exchange_rates

    if n_bootstrap < 0:
        raise AnalysisInputError(f"--bootstrap {n_bootstrap}: give 0 (no intervals) or a number of resamples")
    if weights not in WEIGHTINGS:
        raise AnalysisInputError(f"--weights {weights!r}: give {' or '.join(WEIGHTINGS)}")
    results, sets = sweep_results(store, sweep, reference=reference, eval_set=eval_set)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rates = exchange_rates(results, reference=reference, n_bootstrap=n_bootstrap, seed=seed, weights=weights)
    unique = {(w.category, str(w.message)): w for w in caught}  # as Python's default filter shows them: once
    for warning in unique.values():
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return SweepAnalysis(sweep, reference, results, rates, sets, tuple(text for _, text in unique))
