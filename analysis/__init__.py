"""Analysis of a sweep: power-law fits, exchange rates (Eq. 1 of Geiping et al.), bootstrap CIs, plots.

Imports `results` only (never Ray or torch); matplotlib loads when a plot is drawn.
"""

from __future__ import annotations

from analysis.exchange import exchange_rates, load_results
from analysis.fit import PowerLawFit, fit_power_law
from analysis.plots import plot_effective_samples, plot_scaling_curves
from analysis.probes import probe_summary

__all__ = [
    "PowerLawFit",
    "exchange_rates",
    "fit_power_law",
    "load_results",
    "plot_effective_samples",
    "plot_scaling_curves",
    "probe_summary",
]
