"""The best of N trials, selected and confirmed, on synthetic searches whose trials are all the same point in truth
(bench/synthetic.py `selected_sweeps`: seed effects shared by the reference curve and every trial).

    python -m bench.selection [--sweeps 100] [--bootstrap 400] [--smoke]

Per number of trials: the share of studies whose interval holds the truth (nominal 0.95), for the accuracy's t
interval and v's interval, from the search's own cells (selected) and from the fresh-seed confirmation that
`augworth best` reports; the selected mean's optimism (mean minus truth), and how far that moves x + v (the
confirmation is the baseline: its ratio of median |x + v error| is printed).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from augworth.analysis.search import best_points
from bench.synthetic import AUG, SEARCHED_SIZE, selected_sweeps, true_v

TRIALS = (1, 50, 200)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=100)
    parser.add_argument("--bootstrap", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="3 sweeps, 50 resamples: seconds, for the tests")
    args = parser.parse_args(argv)
    sweeps, n_bootstrap = (3, 50) if args.smoke else (args.sweeps, args.bootstrap)
    a, b, c = AUG
    x = SEARCHED_SIZE
    truth_acc, truth_v = 1.0 - (a * x ** -c + b), float(true_v(np.array([x]))[0])
    print(f"{sweeps} synthetic searches per row, {args.seeds} seeds, confirmed on {args.seeds} fresh seeds, "
          f"x = {x}, true v = {truth_v:.0f}, {n_bootstrap} resamples")
    print(f"{'trials':>6s} {'acc cov sel':>11s} {'conf':>6s} {'v cov sel':>9s} {'conf':>6s} {'optimism':>9s} "
          f"{'|x+v err| sel/conf':>18s}")
    rows = []
    for trials in TRIALS:
        t0 = time.perf_counter()
        results, trial_frame = selected_sweeps(sweeps, trials=trials, seeds=args.seeds, confirm=args.seeds,
                                               rng_seed=trials)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            best = best_points(results, trial_frame, confirm_seeds=args.seeds, n_bootstrap=n_bootstrap)

        def held(low, high, truth, best=best):
            return float(((best[low] <= truth) & (truth <= best[high])).mean())

        error_sel = float(np.median(np.abs(best["v"] - truth_v)))
        error_conf = float(np.median(np.abs(best["confirm_v"] - truth_v)))
        row = {"trials": trials, "acc_selected": held("accuracy_ci_low", "accuracy_ci_high", truth_acc),
               "acc_confirmed": held("confirm_accuracy_ci_low", "confirm_accuracy_ci_high", truth_acc),
               "v_selected": held("v_ci_low", "v_ci_high", truth_v),
               "v_confirmed": held("confirm_v_ci_low", "confirm_v_ci_high", truth_v),
               "optimism": float((best["accuracy"] - truth_acc).mean()),
               "optimism_confirmed": float((best["confirm_accuracy"] - truth_acc).mean()),
               "ratio": error_sel / error_conf if error_conf else np.nan, "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(f"{trials:6d} {row['acc_selected']:11.3f} {row['acc_confirmed']:6.3f} {row['v_selected']:9.3f} "
              f"{row['v_confirmed']:6.3f} {row['optimism']:+9.4f} {row['ratio']:18.2f}")
    return rows


if __name__ == "__main__":
    main()
