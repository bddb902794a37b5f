"""Coverage and width of the exchange-rate intervals on synthetic sweeps with a known truth (bench/synthetic.py).

    python -m bench.intervals [--sweeps 100] [--bootstrap 400] [--smoke]
    python -m bench.intervals --seeds [--sweeps 100] [--bootstrap 400]

For each scenario of seed effects: the share of (sweep, size) intervals that hold the true v (nominal 0.95)
and their median width, for augworth's interval and, from the same paired seed draws, the plain percentile
interval; and the ratio of the two widths (the paired whole-seed bootstrap is the baseline).

`--seeds`: coverage by seed count (2, 3, 4, 5, 10), of v's interval (`exchange_rates`) and of the paired interval
of v_A − v_B (`compare`, as the questions pair them), seed effects shared 0.1 and own 0.05: the figures that
`analysis.intervals.MEASURED_COVERAGE` quotes in its few-seeds warnings.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import augworth.analysis.exchange as exchange
from bench.synthetic import synthetic_sweeps, true_v

SCENARIOS = {
    "shared 0.1": dict(shared=0.1),
    "own 0.1": dict(own=0.1),
    "shared 0.1 + own 0.05": dict(shared=0.1, own=0.05),
    "noise 0.01 only": dict(noise=0.01),
    "shared 0.1, independent subsets": dict(shared=0.1, subset="independent"),
    "shared 0.05, persistent 0.1, independent": dict(shared=0.05, persistent=0.1, subset="independent"),
    "shared 0.1, 5 seeds": dict(shared=0.1, seeds=5),
    "shared 0.1, 3 seeds": dict(shared=0.1, seeds=3),
}


def measure(frame, n_bootstrap: int, plain: bool) -> tuple[float, float]:
    original = exchange.expanded_tail
    if plain:
        exchange.expanded_tail = lambda clusters, level: (1 - level) / 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", exchange.FewSeedsWarning)
            rates = exchange.exchange_rates(frame, n_bootstrap=n_bootstrap, seed=1)
    finally:
        exchange.expanded_tail = original
    rates = rates[rates["augmentation"] == "crop"]
    v = true_v(rates["data_size"].to_numpy(dtype=float))
    covered = (rates["v_ci_low"] <= v) & (v <= rates["v_ci_high"])
    return float(covered.mean()), float((rates["v_ci_high"] - rates["v_ci_low"]).median())


OTHER = (1.8, 0.045, 0.48)  # a second treatment, for the paired difference


def by_seeds(sweeps: int, n_bootstrap: int, counts=(2, 3, 4, 5, 10)) -> list[dict]:
    from augworth.analysis.comparisons import compare

    rows = []
    print(f"{sweeps} synthetic sweeps per seed count (shared 0.1, own 0.05), 6 sizes, {n_bootstrap} resamples")
    print(f"{'seeds':>5s} {'v coverage':>10s} {'difference coverage':>19s}")
    for seeds in counts:
        frame = synthetic_sweeps(sweeps, seeds=seeds, shared=0.1, own=0.05, rng_seed=seeds, more={"other": OTHER})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rates = exchange.exchange_rates(frame, n_bootstrap=n_bootstrap, seed=1)
            pairs = compare(frame, "crop", "other", n_bootstrap=n_bootstrap, seed=1)
        crop = rates[rates["augmentation"] == "crop"]
        v = true_v(crop["data_size"].to_numpy(dtype=float))
        v_cov = float(((crop["v_ci_low"] <= v) & (v <= crop["v_ci_high"])).mean())
        x = pairs["data_size"].to_numpy(dtype=float)
        diff = true_v(x) - true_v(x, aug=OTHER)
        d_cov = float(((pairs["v_diff_ci_low"] <= diff) & (diff <= pairs["v_diff_ci_high"])).mean())
        rows.append({"seeds": seeds, "v_coverage": v_cov, "difference_coverage": d_cov})
        print(f"{seeds:5d} {v_cov:10.3f} {d_cov:19.3f}")
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=400)
    parser.add_argument("--smoke", action="store_true", help="3 sweeps, 50 resamples: seconds, for the tests")
    parser.add_argument("--seeds", action="store_true", help="coverage by seed count instead of by scenario")
    args = parser.parse_args(argv)
    sweeps, n_bootstrap = (3, 50) if args.smoke else (args.sweeps, args.bootstrap)
    if args.seeds:
        return by_seeds(sweeps, n_bootstrap)
    rows = []
    print(f"{sweeps} synthetic sweeps per scenario, 6 sizes, {n_bootstrap} resamples")
    print(f"{'seed effects':34s} {'coverage':>8s} {'width':>8s} {'plain cov':>9s} {'plain w':>8s} {'ratio':>6s}")
    for name, kw in SCENARIOS.items():
        t0 = time.perf_counter()
        frame = synthetic_sweeps(sweeps, **kw)
        ours, plain = measure(frame, n_bootstrap, plain=False), measure(frame, n_bootstrap, plain=True)
        ratio = ours[1] / plain[1] if plain[1] else np.nan
        rows.append({"scenario": name, "coverage": ours[0], "width": ours[1], "plain_coverage": plain[0],
                     "plain_width": plain[1], "ratio": ratio, "seconds": time.perf_counter() - t0})
        print(f"{name:34s} {ours[0]:8.3f} {ours[1]:8.1f} {plain[0]:9.3f} {plain[1]:8.1f} {ratio:6.2f}")
    return rows


if __name__ == "__main__":
    main()
