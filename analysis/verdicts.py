"""What an exchange rate may claim: model-free bounds from the measured means, how far x + v reaches beyond
the measured reference sizes, and when "worth more than any amount of real data" is supported.

The power law's asymptote b is often barely identified: the squared error can stay flat from b = 0.25 to
b = 0 on a sweep whose largest size is far from saturation. So a treatment whose fitted error at x falls
below the reference's fitted b is `unbounded` only where its measured accuracy at x exceeds the upper end of
the reference's asymptote interval (from the same seed resampling as v's interval); otherwise it is
`indeterminate`, and the model-free lower bound says what the data do support.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

EXTRAPOLATION_LIMIT = 2.0  # x + v beyond this many times the largest reference size: shown as "> bound"


def measured_bounds(points: pd.DataFrame, fit: np.ndarray, ref_of_fit: np.ndarray, x: np.ndarray,
                    accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per output row, bounds on v from the measured means alone (no curve): the treatment at x is at least as
    accurate as the reference at its largest measured size whose mean accuracy it reaches (x + v ≥ that
    size; −x where it reaches none), and less accurate than at the smallest size whose mean it does not
    reach (x + v < that size; +inf where it reaches all). Assumes only that more real data do not hurt."""
    means = points.groupby(["_fit", "data_size"], sort=True)["accuracy"].mean()
    low, high = np.full(x.size, np.nan), np.full(x.size, np.nan)
    for i in np.flatnonzero(ref_of_fit[fit] >= 0):
        ref = means.loc[int(ref_of_fit[fit[i]])]
        reached = ref.index[ref.to_numpy() <= accuracy[i]].to_numpy(dtype=float)
        missed = ref.index[ref.to_numpy() > accuracy[i]].to_numpy(dtype=float)
        low[i] = (reached.max() if reached.size else 0.0) - x[i]
        high[i] = (missed.min() if missed.size else np.inf) - x[i]
    return low, high
