"""How often the three questions' intervals hold a known truth, and how often a difference is claimed where there
is none, on synthetic sweeps (bench/synthetic.py; seed effects shared 0.1 and own 0.05, 10 seeds, 6 sizes).

    python -m bench.questions [--sweeps 40] [--bootstrap 400] [--smoke] [--verdicts]

Rows: ood (v_ood − v_id, a 4-10× difference; and a null: the same truth on both sets, each set's seed
effects and noise drawn independently), invariance
(v_aug − v_inv; its trend, flat and falling), stochasticity (v_random − v_fixed4, worth per extra view,
the gradient-noise difference). Coverage is the share of (sweep, size) intervals holding the truth (nominal
0.95); `claimed` the share of rows whose test, family-wise over its table, says "differs".

`--verdicts` instead: what the ood table may claim where the shifted reference's truth is outside the power-law
family (two power laws, no asymptote: every true v finite) and where it saturates inside the measured sizes (v
truly unbounded at most sizes): how many rows the fit alone put at +inf (what the table printed before it took
`analyze`'s verdicts), how many are unbounded, censored, and whether every printed bound holds the true v.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from augworth.analysis.questions import invariance, ood
from augworth.analysis.stochasticity import stochasticity
from bench.synthetic import SHIFTED_AUG, SHIFTED_REF, invariance_frame, true_v, two_power_laws, two_sets, views_frame

NO_ASYMPTOTE, FAR_BETTER = two_power_laws(2.0, 0.8, 0.12, 0.1), (1.0, 0.03, 0.6)
SATURATING, BEYOND = (2.0, 0.10, 0.8), (2.0, 0.02, 0.8)


def _held(low, high, truth) -> float:
    return float(((low <= truth) & (truth <= high)).mean())


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=int, default=40)
    parser.add_argument("--bootstrap", type=int, default=400)
    parser.add_argument("--smoke", action="store_true", help="2 sweeps, 30 resamples: seconds, for the tests")
    parser.add_argument("--verdicts", action="store_true", help="the ood table's verdicts under two truths")
    args = parser.parse_args(argv)
    n, boot = (2, 30) if args.smoke else (args.sweeps, args.bootstrap)
    if args.verdicts:
        return verdicts(n, boot)
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



def verdicts(n: int, boot: int) -> list[dict]:
    """The ood table's verdicts on the shifted set under a truth without asymptote and a saturating one."""
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, ref, aug in (("no asymptote", NO_ASYMPTOTE, FAR_BETTER), ("saturating", SATURATING, BEYOND)):
            rows = ood(two_sets(n, aug_shifted=aug, ref_shifted=ref), n_bootstrap=boot)
            truth = true_v(rows["data_size"].to_numpy(float), ref=ref, aug=aug)
            censored, unbounded = rows["v_ood_censored"].to_numpy(bool), rows["v_ood_unbounded"].to_numpy(bool)
            infinite = np.isinf(truth)
            out.append({"truth": name, "rows": len(rows), "fit_inf": int(np.isposinf(rows["v_ood"]).sum()),
                        "truly_unbounded": int(infinite.sum()), "unbounded": int(unbounded.sum()),
                        "unbounded_where_true": int((unbounded & infinite).sum()),
                        "unbounded_where_false": int((unbounded & ~infinite).sum()), "censored": int(censored.sum()),
                        "bounds_hold": float((rows.loc[censored, "v_ood_bound_low"] <= truth[censored]).mean())
                        if censored.any() else float("nan")})
    print(f"{n} synthetic sweeps, 10 seeds, 6 sizes, {boot} resamples: the ood table on the shifted set")
    print(f"{'truth':14s} {'rows':>5s} {'fit +inf':>8s} {'truly inf':>9s} {'unbounded':>9s} {'(true)':>6s} "
          f"{'(false)':>7s} {'censored':>8s} {'bounds hold':>11s}")
    for r in out:
        print(f"{r['truth']:14s} {r['rows']:5d} {r['fit_inf']:8d} {r['truly_unbounded']:9d} {r['unbounded']:9d} "
              f"{r['unbounded_where_true']:6d} {r['unbounded_where_false']:7d} {r['censored']:8d} "
              f"{r['bounds_hold']:11.3f}")
    return out


if __name__ == "__main__":
    main()
