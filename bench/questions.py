"""How often the three questions' intervals hold a known truth, and how often a difference is claimed where there
is none, on synthetic sweeps (bench/synthetic.py; seed effects shared 0.1 and own 0.05, 10 seeds, 6 sizes).

    python -m bench.questions [--sweeps 40] [--bootstrap 400] [--smoke]

Rows: ood (v_ood − v_id, a 4-10× difference; and a null: the same truth on both sets, each set's seed
effects and noise drawn independently), invariance
(v_aug − v_inv; its trend, flat and falling), stochasticity (v_random − v_fixed4, worth per extra view,
the gradient-noise difference). Coverage is the share of (sweep, size) intervals holding the truth (nominal
0.95); `claimed` the share of rows whose test, family-wise over its table, says "differs".
"""

from __future__ import annotations

import argparse
import warnings

from augworth.analysis.questions import invariance, ood
from augworth.analysis.stochasticity import stochasticity
from bench.synthetic import SHIFTED_AUG, SHIFTED_REF, invariance_frame, true_v, two_sets, views_frame


def _held(low, high, truth) -> float:
    return float(((low <= truth) & (truth <= high)).mean())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=40)
    parser.add_argument("--bootstrap", type=int, default=400)
    parser.add_argument("--smoke", action="store_true", help="2 sweeps, 30 resamples: seconds, for the tests")
    args = parser.parse_args(argv)
    n, boot = (2, 30) if args.smoke else (args.sweeps, args.bootstrap)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shifted = ood(two_sets(n), n_bootstrap=boot)
        x = shifted["data_size"].to_numpy(float)
        rows.append(("ood: v_ood − v_id", _held(shifted["v_diff_ci_low"], shifted["v_diff_ci_high"],
                                               true_v(x, SHIFTED_REF, SHIFTED_AUG) - true_v(x)),
                     float(shifted["differs"].mean())))
        null = ood(two_sets(n, aug_shifted=(1.5, 0.04, 0.5), ref_shifted=(2.0, 0.05, 0.45), rng_seed=2,
                            shifted_rng_seed=3), n_bootstrap=boot)
        rows.append(("ood: same truth on both sets", _held(null["v_diff_ci_low"], null["v_diff_ci_high"], 0.0),
                     float(null["differs"].mean())))
        inv_truth = (1.2, 0.04, 0.5)
        inv = invariance(invariance_frame(n, inv_truth), n_bootstrap=boot)
        x = inv["data_size"].to_numpy(float)
        rows.append(("invariance: v_aug − v_inv", _held(inv["v_diff_ci_low"], inv["v_diff_ci_high"],
                                                        true_v(x) - true_v(x, aug=inv_truth)),
                     float(inv["differs"].mean())))
        flat = inv.drop_duplicates("width")
        rows.append(("invariance: trend, flat truth", _held(flat["trend_ci_low"], flat["trend_ci_high"], 0.0),
                     float((flat["trend_ci_high"] < 0).mean() + (flat["trend_ci_low"] > 0).mean())))
        steep = invariance(invariance_frame(n, (3.0, 0.05, 0.7)), n_bootstrap=boot).drop_duplicates("width")
        rows.append(("invariance: trend −0.195/doubling", _held(steep["trend_ci_low"], steep["trend_ci_high"],
                                                                 -0.195), float((steep["trend_ci_high"] < 0).mean())))
        parts = stochasticity(views_frame(n), n_bootstrap=boot)
        reps = parts["repetitions"]
        fixed4 = reps[(reps["views"] == "fixed") & (reps["r"] == 4)]
        x = fixed4["data_size"].to_numpy(float)
        v4, v1 = true_v(x, aug=(1.7, 0.05, 0.45)), true_v(x, aug=(1.9, 0.05, 0.45))
        rows.append(("stochasticity: v_random − v_fixed4", _held(fixed4["v_random_minus_ci_low"],
                                                                 fixed4["v_random_minus_ci_high"], true_v(x) - v4),
                     float(fixed4["differs"].mean())))
        rows.append(("stochasticity: worth per extra view", _held(fixed4["v_per_extra_view_ci_low"],
                                                                  fixed4["v_per_extra_view_ci_high"], (v4 - v1) / 3),
                     float("nan")))
        noise = parts["probe_differences"]
        noise = noise[noise["probe"] == "grad_noise"]
        rows.append(("stochasticity: grad-noise difference", _held(noise["diff_ci_low"], noise["diff_ci_high"], -0.5),
                     float("nan")))
    print(f"{n} synthetic sweeps, 10 seeds, 6 sizes, {boot} resamples")
    print(f"{'statement':40s} {'coverage':>8s} {'claimed':>8s}")
    out = []
    for name, held, claimed in rows:
        print(f"{name:40s} {held:8.3f} {claimed:8.3f}")
        out.append({"statement": name, "coverage": held, "claimed": claimed})
    return out


if __name__ == "__main__":
    main()
