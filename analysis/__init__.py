"""Analysis of a sweep: power-law fits, exchange rates (Eq. 1 of Geiping et al.), bootstrap CIs, plots, tables.

Imports `results` only (never Ray or torch). Names load on first use, so the command line's tables do not
load scipy; matplotlib loads when a plot is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from augworth.search_spaces.lazy import lazy_exports

if TYPE_CHECKING:
    from .comparisons import compare
    from .exchange import exchange_rates, load_results
    from .fit import PowerLawFit, fit_power_law
    from .plots import plot_effective_samples, plot_scaling_curves
    from .probes import probe_summary
    from .sweep import AnalysisInputError, SweepAnalysis, analyze

_HOMES = {
    "comparisons": ("compare",),
    "exchange": ("exchange_rates", "load_results"),
    "fit": ("PowerLawFit", "fit_power_law"),
    "plots": ("plot_effective_samples", "plot_scaling_curves"),
    "probes": ("probe_summary",),
    "sweep": ("AnalysisInputError", "SweepAnalysis", "analyze"),
}
__all__ = ["AnalysisInputError", "PowerLawFit", "SweepAnalysis", "analyze", "compare", "exchange_rates",
           "fit_power_law", "load_results", "plot_effective_samples", "plot_scaling_curves", "probe_summary"]

__getattr__ = lazy_exports(__name__, _HOMES)
