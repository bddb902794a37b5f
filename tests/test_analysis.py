"""Behaviour of `analysis`: power-law fits, Eq. 1 exchange rates, bootstrap intervals, plots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import least_squares

from augworth.analysis import (
    PowerLawFit,
    exchange_rates,
    fit_power_law,
    load_results,
    plot_effective_samples,
    plot_scaling_curves,
)

SIZES = (100, 300, 1000, 3000, 10000)
A, B, C = 3.0, 0.05, 0.4  # the reference curve e(x) = A·x^(−C) + B


def e_ref(x):
    return A * np.asarray(x, dtype=float) ** -C + B


def results_frame(curves, *, sizes=SIZES, seeds=(0, 1, 2), spread=0.002, eval_set="test", **fields):
    """Final rows for every (treatment, size, seed); curves maps (augmentation, strength) → error(x).

    Seeds get offsets −spread, 0, +spread, …, summing to zero within each size, so the least-squares
    fit on all points equals the fit on the means and exact curves stay exact.
    """
    offsets = np.linspace(-spread, spread, len(seeds)) if len(seeds) > 1 else [0.0]
    rows = []
    for (augmentation, strength), error in curves.items():
        for x in sizes:
            for seed, offset in zip(seeds, offsets, strict=True):
                rows.append(dict(
                    dataset="digits", model="mlp", augmentation=augmentation, strength=strength,
                    data_size=x, seed=seed, eval_set=eval_set, accuracy=1.0 - float(error(x)) + offset,
                    final=True, step=1000, host=f"node{seed}", train_seconds=1.0 + seed,
                    cell_key=f"{augmentation}-{x}-{seed}", **fields,
                ))
    return pd.DataFrame(rows)


def rows_of(rates, augmentation, **where):
    mask = rates["augmentation"] == augmentation
    for name, value in where.items():
        mask &= rates[name].isna() if value is None else rates[name] == value
    return rates[mask].sort_values("data_size").reset_index(drop=True)


# ----- fit_power_law ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "c"), [(3.0, 0.05, 0.4), (0.8, 0.0, 0.3), (50.0, 0.2, 1.2), (0.5, 0.3, 0.1)]
)
def test_fit_recovers_exact_power_law_from_10_to_200k(a, b, c):
    sizes = np.repeat(np.geomspace(10, 200_000, 9), 2)
    fit = fit_power_law(sizes, a * sizes**-c + b)
    assert fit.ok and fit.reason is None
    assert (fit.n_sizes, fit.n_points) == (9, 18)
    np.testing.assert_allclose([fit.a, fit.b, fit.c], [a, b, c], rtol=1e-6, atol=1e-9)
    assert fit.rmse < 1e-9


def test_fit_with_noise_is_close_and_no_worse_than_scipy_bounded_least_squares():
    rng = np.random.default_rng(0)
    sizes = np.repeat(np.geomspace(50, 50_000, 8), 4)
    errors = 2.0 * sizes**-0.5 + 0.08 + rng.normal(0, 0.003, sizes.size)
    fit = fit_power_law(sizes, errors)
    assert fit.ok
    np.testing.assert_allclose([fit.a, fit.b, fit.c], [2.0, 0.08, 0.5], rtol=0.15)
    assert fit.rmse <= scipy_bounded_rmse(sizes, errors) * (1 + 1e-9)


def scipy_bounded_rmse(sizes, errors):
    """The same model by scipy's bounded least_squares, best of several starts, in scaled sizes."""
    scaled = sizes / sizes.max()
    best = min(
        (least_squares(lambda p: p[0] * scaled ** -p[2] + p[1] - errors, start,
                       bounds=([0, 0, 0], [np.inf, 1, np.inf])) for start in
         [(0.1, 0.1, 0.5), (1.0, 0.0, 1.0), (0.01, 0.5, 0.2), (0.5, 0.05, 2.0)]),
        key=lambda r: r.cost,
    )
    return np.sqrt(2 * best.cost / sizes.size)


@pytest.mark.parametrize(
    ("case", "curve"),
    [("b would be negative", lambda x: 0.9 * x**-0.2 - 0.05),
     ("error rises", lambda x: 0.2 + 0.01 * np.log(x))],
)
def test_fit_keeps_its_bounds_where_they_bind(case, curve):
    sizes = np.repeat(np.geomspace(100, 100_000, 7), 2)
    errors = curve(sizes)
    fit = fit_power_law(sizes, errors)
    assert fit.ok and fit.a > 0 and fit.c > 0 and 0 <= fit.b < 1
    if case == "b would be negative":
        assert fit.b == 0.0
    assert fit.rmse <= scipy_bounded_rmse(sizes, errors) * (1 + 1e-6)


def test_fit_with_fewer_than_three_sizes_is_not_ok():
    fit = fit_power_law([100, 100, 100, 1000, 1000], [0.5, 0.51, 0.49, 0.3, 0.31])
    assert isinstance(fit, PowerLawFit)
    assert not fit.ok and "fewer than 3 sizes (2)" in fit.reason
    assert np.isnan([fit.a, fit.b, fit.c]).all()


def test_fit_inverse_undoes_the_curve_and_is_infinite_below_the_asymptote():
    fit = fit_power_law(np.array(SIZES), e_ref(SIZES))
    x = np.array([50.0, 777.0, 1e6])
    np.testing.assert_allclose(fit.size_for_error(fit.error(x)), x, rtol=1e-6)
    assert np.isposinf(fit.size_for_error([fit.b, fit.b - 0.01])).all()


# ----- exchange_rates: Eq. 1 ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2.0, 3.5])
def test_scaled_curve_is_worth_k_minus_one_times_x_exactly(k):
    """e_aug(x) = e_ref(k·x) ⇒ f_ref⁻¹(f_aug(x)) = k·x ⇒ v = (k − 1)·x, ratio k."""
    frame = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(k * np.asarray(x))})
    rates = exchange_rates(frame)
    crop, none = rows_of(rates, "crop"), rows_of(rates, "none")
    x = np.array(SIZES, dtype=float)

    assert len(rates) == 2 * len(SIZES)
    np.testing.assert_allclose(crop["effective_extra_samples"], (k - 1) * x, rtol=1e-6)
    np.testing.assert_allclose(crop["exchange_ratio"], k, rtol=1e-6)
    np.testing.assert_allclose(crop["accuracy_fit"], 1 - e_ref(k * x), atol=1e-9)
    np.testing.assert_allclose(crop["accuracy_mean"], 1 - e_ref(k * x), atol=1e-12)
    np.testing.assert_allclose(crop[["a", "b", "c"]].iloc[0], [A * k**-C, B, C], rtol=1e-6)
    np.testing.assert_allclose(crop[["ref_a", "ref_b", "ref_c"]].iloc[0], [A, B, C], rtol=1e-6)
    assert (crop["n_seeds"] == 3).all() and (crop["accuracy_std"] > 0).all()
    assert crop["fit_ok"].all() and crop["fit_reason"].isna().all()
    assert not crop["unbounded"].any() and not crop["is_reference"].any()
    # x + v = k·x is read off the reference beyond its largest measured size
    assert crop["extrapolated"].tolist() == (k * x > max(SIZES)).tolist()
    # the reference's own rows: v = 0, ratio 1
    assert none["is_reference"].all()
    assert (none["effective_extra_samples"] == 0).all() and (none["exchange_ratio"] == 1).all()
    assert not none["extrapolated"].any()


def test_augmentation_that_hurts_has_negative_v_and_extrapolates_below_the_smallest_size():
    frame = results_frame({("none", None): e_ref, ("blur", 1.0): lambda x: e_ref(0.5 * np.asarray(x))})
    blur = rows_of(exchange_rates(frame), "blur")
    np.testing.assert_allclose(blur["effective_extra_samples"], -0.5 * np.array(SIZES), rtol=1e-6)
    assert (blur["exchange_ratio"] < 1).all()
    # x + v = x/2 is below the reference's smallest size only at the smallest x
    assert blur["extrapolated"].tolist() == [True, False, False, False, False]


def test_error_below_the_reference_asymptote_is_unbounded():
    # 2·x^(−0.5) + 0.01 falls below the reference's asymptote B = 0.05 from x = 2500 on
    trivial_error = lambda x: 2.0 * np.asarray(x) ** -0.5 + 0.01  # noqa: E731
    frame = results_frame({("none", None): e_ref, ("trivial", 1.0): trivial_error})
    with pytest.warns(UserWarning, match="from 3 seeds"):  # the asymptote's interval needs the bootstrap
        trivial = rows_of(exchange_rates(frame, n_bootstrap=200), "trivial")
    below = trivial["data_size"] > 2500
    assert below.tolist() == [False, False, False, True, True]
    # at 3,000 the treatment's mean (0.9535) is within its own seeds' t interval (3 seeds: ±0.005) of the
    # reference's asymptote (0.95): the fit says unbounded, the data do not show it; at 10,000 (0.97) they do
    assert trivial["unbounded"].tolist() == [False, False, False, False, True]
    assert trivial["indeterminate"].tolist() == [False, False, False, True, False]
    assert (trivial["ref_asymptote_high"] < 1 - 0.01 - 2 / 3000**0.5).all()
    # without an interval for the reference's asymptote the fit's say-so is not a verdict: indeterminate
    plain = rows_of(exchange_rates(frame), "trivial")
    assert not plain["unbounded"].any() and plain["indeterminate"].tolist() == below.tolist()
    assert np.isposinf(trivial.loc[below, "effective_extra_samples"]).all()
    assert np.isposinf(trivial.loc[below, "exchange_ratio"]).all()
    assert trivial.loc[below, "extrapolated"].all()
    assert np.isfinite(trivial.loc[~below, "effective_extra_samples"]).all()


# ----- exchange_rates: rows, groups, failures ----------------------------------------------------------


def test_rows_with_final_false_are_ignored():
    frame = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))})
    early = frame.assign(final=False, accuracy=0.1, step=10)
    rates = exchange_rates(pd.concat([frame, early], ignore_index=True))
    pd.testing.assert_frame_equal(rates, exchange_rates(frame))
    assert (rates["n_seeds"] == 3).all()


def test_run_columns_never_split_a_fit():
    frame = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))})
    rates = exchange_rates(frame)  # host, train_seconds, step, cell_key differ from row to row
    assert len(rates) == 2 * len(SIZES)
    assert not {"host", "train_seconds", "step", "cell_key", "seed"} & set(rates.columns)


def test_two_groups_each_use_their_own_reference():
    wide = results_frame({("none", None): lambda x: 0.5 * e_ref(x),
                          ("crop", 2.0): lambda x: 0.5 * e_ref(3 * np.asarray(x))}, width=32)
    narrow = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))},
                           width=16)
    rates = exchange_rates(pd.concat([wide, narrow], ignore_index=True))
    x = np.array(SIZES, dtype=float)
    for width, k in ((16, 2.0), (32, 3.0)):
        crop = rows_of(rates, "crop", width=width)
        np.testing.assert_allclose(crop["effective_extra_samples"], (k - 1) * x, rtol=1e-6)
    assert rows_of(rates, "crop", width=16)["ref_a"].iloc[0] == pytest.approx(A, rel=1e-6)
    assert rows_of(rates, "crop", width=32)["ref_a"].iloc[0] == pytest.approx(A / 2, rel=1e-6)


def test_missing_group_values_are_their_own_group_and_survive():
    # None and NaN in the same column are the same missing value; they must not merge with width=16
    missing = results_frame({("none", None): lambda x: 0.5 * e_ref(x),
                             ("crop", 2.0): lambda x: 0.5 * e_ref(3 * np.asarray(x))}, width=None)
    missing.loc[missing.index % 2 == 0, "width"] = np.nan
    present = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))},
                            width=16)
    rates = exchange_rates(pd.concat([missing, present], ignore_index=True))
    assert len(rates) == 4 * len(SIZES)
    crop = rows_of(rates, "crop", width=None)
    assert len(crop) == len(SIZES) and (crop["n_seeds"] == 3).all()
    np.testing.assert_allclose(crop["exchange_ratio"], 3.0, rtol=1e-6)
    np.testing.assert_allclose(rows_of(rates, "crop", width=16)["exchange_ratio"], 2.0, rtol=1e-6)
    # a missing strength (the reference's) is kept too
    assert rows_of(rates, "none", width=16)["strength"].isna().all()


@pytest.mark.parametrize("strength", ["absent", "all null"])
def test_strength_may_be_absent_or_all_null(strength):
    frame = results_frame({("none", None): e_ref, ("crop", None): lambda x: e_ref(2 * np.asarray(x))})
    frame = frame.drop(columns="strength") if strength == "absent" else frame.assign(strength=np.nan)
    rates = exchange_rates(frame)
    assert ("strength" in rates.columns) == (strength != "absent")
    np.testing.assert_allclose(rows_of(rates, "crop")["exchange_ratio"], 2.0, rtol=1e-6)


def test_fewer_than_three_sizes_is_reported_not_dropped():
    frame = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))})
    few = results_frame({("mixup", 0.2): e_ref}, sizes=(100, 1000))
    rates = exchange_rates(pd.concat([frame, few], ignore_index=True))
    mixup = rows_of(rates, "mixup")
    assert mixup["data_size"].tolist() == [100, 1000]
    assert not mixup["fit_ok"].any()
    assert mixup["fit_reason"].str.contains("fewer than 3 sizes").all()
    assert mixup["effective_extra_samples"].isna().all() and mixup["accuracy_fit"].isna().all()
    np.testing.assert_allclose(mixup["accuracy_mean"], 1 - e_ref([100, 1000]))
    assert rows_of(rates, "crop")["fit_ok"].all()


def test_a_failed_reference_fit_is_the_reason_for_its_group():
    frame = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))})
    frame = frame[(frame["augmentation"] != "none") | frame["data_size"].isin([100, 1000])]
    crop = rows_of(exchange_rates(frame), "crop")
    assert not crop["fit_ok"].any()
    assert crop["fit_reason"].str.startswith("reference fit failed: fewer than 3 sizes").all()
    assert crop["effective_extra_samples"].isna().all()
    assert np.isfinite(crop["accuracy_fit"]).all()  # its own fit is fine and still reported


def test_a_group_without_the_reference_is_reported():
    with_ref = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))},
                             width=16)
    without = results_frame({("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))}, width=32)
    rates = exchange_rates(pd.concat([with_ref, without], ignore_index=True))
    orphan = rows_of(rates, "crop", width=32)
    assert len(orphan) == len(SIZES)
    assert (orphan["fit_reason"] == "no reference 'none' in this group").all()
    assert orphan["effective_extra_samples"].isna().all() and not orphan["fit_ok"].any()
    assert rows_of(rates, "crop", width=16)["fit_ok"].all()


def test_reference_name_is_a_parameter():
    frame = results_frame({("flip", None): e_ref, ("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))})
    crop = rows_of(exchange_rates(frame, reference="flip"), "crop")
    np.testing.assert_allclose(crop["exchange_ratio"], 2.0, rtol=1e-6)


@pytest.mark.parametrize("column", ["augmentation", "data_size", "seed", "eval_set", "accuracy"])
def test_missing_required_column_is_a_value_error_naming_it(column):
    frame = results_frame({("none", None): e_ref}).drop(columns=column)
    with pytest.raises(ValueError, match=repr(column)):
        exchange_rates(frame)


def test_accuracy_in_percent_is_rejected():
    frame = results_frame({("none", None): e_ref})
    with pytest.raises(ValueError, match="fraction"):
        exchange_rates(frame.assign(accuracy=frame["accuracy"] * 100))


def test_eval_sets_are_fitted_separately():
    test = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))})
    train = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(4 * np.asarray(x))},
                          eval_set="train")
    rates = exchange_rates(pd.concat([test, train], ignore_index=True))
    for eval_set, k in (("test", 2.0), ("train", 4.0)):
        crop = rows_of(rates, "crop", eval_set=eval_set)
        np.testing.assert_allclose(crop["exchange_ratio"], k, rtol=1e-6)


# ----- bootstrap -------------------------------------------------------------------------------------------


def noisy_frame(seed=0):
    rng = np.random.default_rng(seed)
    frame = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))},
                          seeds=(0, 1, 2, 3, 4))
    return frame.assign(accuracy=frame["accuracy"] + rng.normal(0, 0.004, len(frame)))


def test_bootstrap_intervals_contain_the_point_estimate():
    rates = exchange_rates(noisy_frame(), n_bootstrap=200, seed=1)
    crop, none = rows_of(rates, "crop"), rows_of(rates, "none")
    v = crop["effective_extra_samples"]
    assert (crop["v_ci_low"] <= v).all() and (v <= crop["v_ci_high"]).all()
    assert (crop["v_ci_high"] > crop["v_ci_low"]).all()  # noise gives a real interval
    assert (none["v_ci_low"] == 0).all() and (none["v_ci_high"] == 0).all()
    again = exchange_rates(noisy_frame(), n_bootstrap=200, seed=1)
    pd.testing.assert_frame_equal(rates, again)  # seeded: reproducible


def test_bootstrap_interval_matches_the_spread_over_fresh_noise():
    """The 95% interval's width is about that of v over independently redrawn data sets (±2×)."""
    fresh = [rows_of(exchange_rates(noisy_frame(seed)), "crop")["effective_extra_samples"]
             for seed in range(40)]
    spread = 2 * 1.96 * np.std(np.array(fresh), axis=0)
    crop = rows_of(exchange_rates(noisy_frame(), n_bootstrap=300), "crop")
    width = (crop["v_ci_high"] - crop["v_ci_low"]).to_numpy()
    assert ((width > spread / 2) & (width < spread * 2)).all(), (width, spread)


def test_no_bootstrap_columns_without_bootstrap():
    assert not {"v_ci_low", "v_ci_high"} & set(exchange_rates(noisy_frame()).columns)


# ----- store, imports, plots ---------------------------------------------------------------------------


def test_load_results_reads_a_sweep_from_the_store(tmp_path):
    from augworth.results import Store

    frame = results_frame({("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(2 * np.asarray(x))})
    store = Store(tmp_path)
    fields = ["dataset", "model", "augmentation", "strength", "data_size", "seed", "eval_set",
              "accuracy", "final", "step", "host", "train_seconds"]
    for key, rows in frame.groupby("cell_key"):
        records = rows[fields].to_dict("records")
        store.write_cell("demo", key.replace(".", "_"),
                         [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in records])
    loaded = load_results(str(tmp_path), "demo")
    assert len(loaded) == len(frame)
    crop = rows_of(exchange_rates(loaded), "crop")
    np.testing.assert_allclose(crop["exchange_ratio"], 2.0, rtol=1e-6)


def test_importing_analysis_loads_neither_torch_ray_nor_matplotlib():
    code = "import sys, augworth.analysis; print(sorted({'torch', 'ray', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def plot_inputs():
    """Two groups; an unbounded treatment, one that hurts, one with too few sizes; bootstrap columns."""
    curves = {("none", None): e_ref, ("crop", 2.0): lambda x: e_ref(2.5 * np.asarray(x)),
              ("flip", None): lambda x: e_ref(0.6 * np.asarray(x)),
              ("trivial", 1.0): lambda x: 2.0 * np.asarray(x) ** -0.5 + 0.01}
    frame = pd.concat([
        results_frame(curves, width=16), results_frame(curves, width=32),
        results_frame({("mixup", 0.2): e_ref}, sizes=(100, 1000), width=16),
    ], ignore_index=True)
    rng = np.random.default_rng(0)
    frame["accuracy"] += rng.normal(0, 0.003, len(frame))
    return frame, exchange_rates(frame, n_bootstrap=30)


def is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_plots_write_pngs_with_unbounded_and_failed_fits(tmp_path):
    frame, rates = plot_inputs()
    assert rates["unbounded"].any() and (~rates["fit_ok"]).any()
    curves = plot_scaling_curves(frame, rates, tmp_path / "figs" / "curves.png", eval_set="test")
    samples = plot_effective_samples(rates, tmp_path / "figs" / "v.png", eval_set="test")
    assert curves == tmp_path / "figs" / "curves.png" and is_png(curves)
    assert samples == tmp_path / "figs" / "v.png" and is_png(samples)
    # one group, no bootstrap columns
    one = exchange_rates(frame[frame["width"] == 16])
    assert is_png(plot_scaling_curves(frame[frame["width"] == 16], one, tmp_path / "c1.png", eval_set="test"))
    assert is_png(plot_effective_samples(one, tmp_path / "v1.png", eval_set="test"))


def test_plots_name_an_unknown_eval_set(tmp_path):
    frame, rates = plot_inputs()
    with pytest.raises(ValueError, match="'ood'.*have: test"):
        plot_effective_samples(rates, tmp_path / "v.png", eval_set="ood")


def test_probe_summary_takes_one_value_per_cell_and_step_and_summarises_over_seeds():
    from augworth.analysis import probe_summary

    rows = []
    for seed, noise in ((0, 1.0), (1, 3.0)):
        for eval_set in ("test", "corrupted"):  # a probe is stored on every eval set's row of its step
            for step, probed in ((5, True), (10, False)):
                rows.append({"cell_key": f"k{seed}", "augmentation": "crop", "strength": 4.0, "views": "fixed",
                             "views_r": 2, "data_size": 100, "seed": seed, "step": step, "eval_set": eval_set,
                             "grad_noise": noise if probed else None, "flatness": 0.5 if probed else None,
                             "hessian_top_eig": None})
    summary = probe_summary(pd.DataFrame(rows))
    assert len(summary) == 1 and summary.loc[0, "step"] == 5
    assert summary.loc[0, "grad_noise_mean"] == 2.0 and summary.loc[0, "grad_noise_n"] == 2
    assert summary.loc[0, "grad_noise_std"] == pytest.approx(np.std([1.0, 3.0], ddof=1))
    assert summary.loc[0, "flatness_std"] == 0.0
    assert "hessian_top_eig_mean" not in summary  # never probed
    assert probe_summary(pd.DataFrame(rows).assign(grad_noise=None, flatness=None)).empty


def test_the_plots_mark_censored_points_and_draw_bands_and_the_asymptote(tmp_path, monkeypatch):
    import augworth.analysis.plots as plots

    drawn = {}
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.setdefault(Path(path).name, fig) and Path(path))
    frame, rates = plot_inputs()
    rates = rates.copy()
    treated = ~rates["is_reference"] & np.isfinite(rates["effective_extra_samples"])
    rates.loc[treated[treated].index[:2], "beyond_extrapolation_limit"] = True  # two censored points
    plots.plot_effective_samples(rates, tmp_path / "v.png", eval_set="test")
    plots.plot_scaling_curves(frame, rates, tmp_path / "c.png", eval_set="test")
    labels = {name: [t.get_text() for legend in fig.legends for t in legend.get_texts()]
              for name, fig in drawn.items()}
    assert any(label.startswith("censored") for label in labels["v.png"])
    assert any("95% band of the fit" in label for label in labels["c.png"])
    assert any("reference asymptote" in label for label in labels["c.png"])
