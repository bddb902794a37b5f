"""Exchange-rate intervals against synthetic sweeps with a known truth and seeds shared across treatments."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import augworth.analysis.exchange as exchange
from augworth.analysis import exchange_rates
from bench.synthetic import synthetic_sweeps, true_v

SCENARIOS = {  # seed effects shared by every treatment, a treatment's own, and subsets redrawn at each size
    "shared": dict(shared=0.1),
    "own": dict(own=0.1),
    "shared and own": dict(shared=0.1, own=0.05),
    "independent subsets": dict(shared=0.1, subset="independent"),
    # a seed's initial weights and batch order persist across sizes when its subsets do not
    "independent subsets, persistent seed effect": dict(shared=0.05, persistent=0.1, subset="independent"),
}


def treated(frame, n_bootstrap=300):
    with warnings.catch_warnings():
        warnings.simplefilter("error", exchange.FewSeedsWarning)  # 10 seeds: no warning
        rates = exchange_rates(frame, n_bootstrap=n_bootstrap, seed=1)
    return rates[rates["augmentation"] == "crop"].reset_index(drop=True)


def covered(rates):
    v = true_v(rates["data_size"].to_numpy(dtype=float))
    return (rates["v_ci_low"] <= v) & (v <= rates["v_ci_high"])


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_intervals_cover_the_true_v_near_nominal_with_ten_seeds(scenario):
    rates = treated(synthetic_sweeps(60, **SCENARIOS[scenario]))
    coverage = covered(rates).mean()
    assert 0.85 <= coverage <= 0.995, coverage  # nominal 0.95 over 60 sweeps x 6 sizes
    assert (rates["ci_seeds"] == 10).all() and (rates["ci_resamples"] > 250).all()


def test_intervals_are_no_wider_than_a_paired_whole_seed_bootstrap_allows(monkeypatch):
    frame = synthetic_sweeps(40, shared=0.1, own=0.05, rng_seed=3)
    ours = treated(frame)
    monkeypatch.setattr(exchange, "expanded_tail", lambda clusters, level: (1 - level) / 2)  # plain percentile
    paired = treated(frame)
    ratio = (ours["v_ci_high"] - ours["v_ci_low"]).median() / (paired["v_ci_high"] - paired["v_ci_low"]).median()
    assert 1.0 < ratio <= 1.5, ratio


def test_one_draw_of_seeds_serves_the_treatment_and_its_reference():
    # large seed effects shared by both curves and nothing else: paired, they cancel; drawn apart, they do not
    frame = synthetic_sweeps(20, shared=0.3, noise=0.0005, rng_seed=5)
    paired = treated(frame)
    apart = frame.assign(seed=frame["seed"] + 100 * (frame["augmentation"] == "crop"))  # other clusters
    unpaired = treated(apart)
    width = lambda r: (r["v_ci_high"] - r["v_ci_low"]).median()  # noqa: E731
    assert width(paired) < 0.5 * width(unpaired), (width(paired), width(unpaired))
    assert covered(paired).mean() >= 0.85


def test_few_seeds_are_counted_and_warned_about():
    frame = synthetic_sweeps(2, seeds=3, shared=0.1)
    with pytest.warns(exchange.FewSeedsWarning, match="from 3 seeds: below 5 seeds"):
        rates = exchange_rates(frame, n_bootstrap=200, seed=0)
    crop = rates[rates["augmentation"] == "crop"]
    assert (crop["ci_seeds"] == 3).all() and (crop["ci_resamples"] <= 10).all()  # C(5, 3) multisets of 3 seeds


def test_whole_seeds_are_resampled_whatever_the_subsets():
    frame = synthetic_sweeps(3, shared=0.1)
    with_column = exchange_rates(frame, n_bootstrap=100, seed=2)
    without = exchange_rates(frame.drop(columns="subset"), n_bootstrap=100, seed=2)
    np.testing.assert_array_equal(with_column["v_ci_low"], without["v_ci_low"])
    independent = exchange_rates(frame.assign(subset="independent"), n_bootstrap=100, seed=2)
    np.testing.assert_array_equal(independent["v_ci_low"], without["v_ci_low"])


def test_independent_subsets_with_a_persistent_seed_effect_cover_at_every_size():
    rates = treated(synthetic_sweeps(60, shared=0.05, persistent=0.1, subset="independent", rng_seed=9))
    by_size = covered(rates).groupby(rates["data_size"]).mean()
    assert (by_size >= 0.85).all(), by_size.to_dict()  # drawn within each size: 0.88 at small sizes (issue 25)


# ----- verdicts --------------------------------------------------------------------------------------------

def test_an_asymptote_the_data_do_not_pin_down_gives_indeterminate_never_unbounded():
    ref, aug = (0.8, 0.15, 0.3), (0.3, 0.15, 0.3)  # one asymptote: the truth is finite at every size
    frame = synthetic_sweeps(40, ref=ref, aug=aug, noise=0.02, own=0.1, seeds=5, rng_seed=7)
    rates = treated(frame)
    claimed = np.isposinf(rates["effective_extra_samples"])  # the fit puts the treatment below b_ref
    assert claimed.mean() > 0.1 and np.isfinite(true_v(rates["data_size"].to_numpy(float), ref=ref, aug=aug)).all()
    assert not rates["unbounded"].any() and (rates["indeterminate"] == claimed).all()
    assert (rates.loc[claimed, "v_bound_low"] >= -rates.loc[claimed, "data_size"]).all()
    plain = exchange_rates(frame)  # no bootstrap, no asymptote interval: never unbounded
    assert not plain["unbounded"].any() and plain["indeterminate"].sum() == claimed.sum()


def test_a_treatment_past_a_saturated_reference_is_unbounded_where_the_truth_is():
    ref, aug = (2.0, 0.10, 0.8), (2.0, 0.02, 0.8)  # the reference saturates inside the measured sizes
    rates = treated(synthetic_sweeps(40, shared=0.1, own=0.05, ref=ref, aug=aug, rng_seed=7))
    truth = np.isinf(true_v(rates["data_size"].to_numpy(float), ref=ref, aug=aug))
    assert not (rates["unbounded"] & ~truth).any()  # never claimed where it is false
    assert (rates["unbounded"] == truth).mean() >= 0.95


def test_far_extrapolations_are_flagged_and_printed_as_a_bound():
    from rich.console import Console

    from augworth.analysis.tables import summary_table

    rates = exchange_rates(synthetic_sweeps(1), n_bootstrap=100, seed=0)
    crop = rates[rates["augmentation"] == "crop"]
    x_plus_v = crop["data_size"] + crop["effective_extra_samples"]
    assert (crop["extrapolation_factor"] == x_plus_v / 1600).all()
    assert (crop["beyond_extrapolation_limit"] == (x_plus_v > 3200)).all() and crop["beyond_extrapolation_limit"].any()
    console = Console(width=250, record=True)
    console.print(summary_table(rates))
    text = console.export_text()
    for x in crop.loc[crop["beyond_extrapolation_limit"], "data_size"]:
        assert f"│ {x} " in text and f"> {3200 - x}" in text  # the bound, not the curve's number


# ----- comparisons -----------------------------------------------------------------------------------------

def test_compare_finds_a_real_difference_and_claims_none_where_there_is_none():
    from augworth.analysis import compare
    from bench.synthetic import AUG

    better = (1.1, 0.04, 0.5)
    frame = synthetic_sweeps(12, shared=0.1, own=0.05, more={"same": AUG, "better": better}, rng_seed=2)
    same = compare(frame, "crop", "same", n_bootstrap=200)
    assert len(same) == 12 * 6 and not same["differs"].any()  # family-wise over the table: no false "differs"
    assert ((same["v_diff_ci_low"] <= 0) & (same["v_diff_ci_high"] >= 0)).mean() >= 0.9
    found = compare(frame, "better", "crop", n_bootstrap=200)
    truth = true_v(found["data_size"].to_numpy(float), aug=better) - true_v(found["data_size"].to_numpy(float))
    assert found["differs"].mean() >= 0.9 and (found["v_diff"] > 0).all()
    assert ((found["v_diff_ci_low"] <= truth) & (truth <= found["v_diff_ci_high"])).mean() >= 0.85
    with pytest.raises(ValueError, match="no treatment 'flip' in the results .have: better, crop, same; reference"):
        compare(frame, "flip", "crop")


def test_holm_adjusts_step_down():
    from augworth.analysis.paired import holm

    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03])), [0.03, 0.06, 0.06])


def test_fit_diagnostics_flag_lack_of_fit_bounds_and_a_falling_reference():
    frame = synthetic_sweeps(30, noise=0.01, rng_seed=1)  # true power laws: the lack-of-fit p is about uniform
    fits = exchange_rates(frame).drop_duplicates(["width", "augmentation"])
    assert (fits["lack_of_fit_p"] < 0.05).mean() <= 0.15 and fits["lack_of_fit_p"].median() > 0.2
    assert fits["fit_at_bound"].isna().all() and fits["ref_monotone"].all()
    dip = frame.copy()  # not a power law: the treatment's accuracy dips at one size
    dip.loc[(dip["augmentation"] == "crop") & (dip["data_size"] == 400), "accuracy"] -= 0.05
    crop = exchange_rates(dip).query("augmentation == 'crop'")
    assert (crop["lack_of_fit_p"] < 1e-6).all() and (crop["ref_lack_of_fit_p"] > 1e-3).all()
    falling = frame.copy()  # the reference gets worse with more data at its largest size
    falling.loc[(falling["augmentation"] == "none") & (falling["data_size"] == 1600), "accuracy"] -= 0.2
    assert not exchange_rates(falling).query("augmentation == 'crop'")["ref_monotone"].any()
    saturated = synthetic_sweeps(3, noise=0.0001, ref=(2.0, 0.0, 0.45), rng_seed=1)  # the reference's b is 0
    assert (exchange_rates(saturated).query("augmentation == 'crop'")["ref_fit_at_bound"] == "b = 0").all()


def test_review_cases_labels_with_views_sparse_seeds_many_seeds_and_bounds_that_never_cross():
    import pandas as pd

    from augworth.analysis import compare

    # treatments told apart by their views: compared by the labels the tables print, against plain none
    frame = synthetic_sweeps(2, shared=0.1, more={"fixed": (1.7, 0.04, 0.5)}, rng_seed=4)
    frame["views"] = np.where(frame["augmentation"] == "fixed", "fixed", "random")
    frame["views_r"] = np.where(frame["augmentation"] == "fixed", 4.0, np.nan)
    frame["augmentation"] = frame["augmentation"].replace({"fixed": "crop"})
    pairs = compare(frame, "crop [fixed 4]", "crop [random]", n_bootstrap=50)
    assert len(pairs) == 12 and (pairs["reference"] == "none").all()
    assert (compare(frame, "crop [random]", "none", n_bootstrap=50)["v_second"] == 0).all()
    # above 12 seeds the sign patterns are drawn at random, the observed one among them: p is never 0
    many = compare(synthetic_sweeps(1, seeds=16, shared=0.1, more={"better": (0.8, 0.04, 0.5)}), "better", "crop",
                   n_bootstrap=50)
    assert (many["p_sign_flip"] > 0).all() and (many["p_sign_flip"] < 0.01).all()
    # a treatment whose cells exist for 3 of 10 seeds: its interval rests on 3 seeds, and says so
    sparse = synthetic_sweeps(1)
    sparse = sparse[(sparse["augmentation"] == "none") | (sparse["seed"] < 3)]
    with pytest.warns(exchange.FewSeedsWarning, match="from 3 seeds"):
        rates = exchange_rates(sparse, n_bootstrap=100, seed=0)
    assert (rates.loc[rates["augmentation"] == "crop", "ci_seeds"] == 3).all()
    # a reference whose mean falls at one size: the model-free bounds still bracket, never cross
    falling = synthetic_sweeps(1, noise=0.0001)
    falling.loc[(falling["augmentation"] == "none") & (falling["data_size"] == 200), "accuracy"] -= 0.2
    crop = exchange_rates(falling).query("augmentation == 'crop'")
    assert (crop["v_bound_low"] <= crop["v_bound_high"]).all()
    assert isinstance(pairs, pd.DataFrame)


def test_the_profile_interval_of_b_covers_the_true_asymptote_and_widens_where_the_data_do_not_pin_it():
    fits = exchange_rates(synthetic_sweeps(80, noise=0.01, rng_seed=3)).drop_duplicates(["width", "augmentation"])
    for name, true_b in (("none", 0.05), ("crop", 0.04)):
        one = fits[fits["augmentation"] == name]
        inside = (one["b_profile_low"] <= true_b) & (true_b <= one["b_profile_high"])
        assert 0.88 <= inside.mean() <= 1.0, (name, inside.mean())
        assert ((one["b_profile_low"] <= one["b"]) & (one["b"] <= one["b_profile_high"])).all()
    # far from saturation (c small, sizes short of the plateau) the same noise leaves b loose
    loose = exchange_rates(synthetic_sweeps(20, noise=0.01, ref=(0.8, 0.15, 0.3), rng_seed=3))
    loose = loose.drop_duplicates("width")
    width = lambda frame: (frame["ref_b_profile_high"] - frame["ref_b_profile_low"]).median()  # noqa: E731
    assert width(loose) > 2 * width(fits[fits["augmentation"] == "none"])
    assert exchange_rates(synthetic_sweeps(1, seeds=1, sizes=(50, 100, 200)))["b_profile_low"].isna().all()


def test_inverse_variance_weights_let_precise_sizes_outweigh_a_noisy_one():
    frame = synthetic_sweeps(60, noise=0.004, rng_seed=5)
    noisy = frame["data_size"] == 50  # one size with ten times the noise, biased by a few seeds' luck
    rng = np.random.default_rng(0)
    frame.loc[noisy, "accuracy"] += rng.normal(0.0, 0.04, noisy.sum())
    x = np.array([400.0])
    errors = {}
    for weights in ("equal", "inverse_variance"):
        rates = exchange_rates(frame, weights=weights)
        at = rates[(rates["augmentation"] == "crop") & (rates["data_size"] == 400)]
        errors[weights] = np.median(np.abs(np.log((400 + at["effective_extra_samples"]) / (x + true_v(x)))))
    assert errors["inverse_variance"] < 0.8 * errors["equal"], errors
    with pytest.raises(ValueError, match="weights must be one of"):
        exchange_rates(frame, weights="1/var")


def test_the_fitted_accuracys_band_holds_the_true_curve():
    rates = exchange_rates(synthetic_sweeps(20, shared=0.1, own=0.05, rng_seed=4), n_bootstrap=200, seed=2)
    a, b, c = (np.where(rates["augmentation"] == "crop", aug, ref) for aug, ref in zip((1.5, 0.04, 0.5),
                                                                                      (2.0, 0.05, 0.45), strict=True))
    truth = 1.0 - (a * rates["data_size"].to_numpy(float) ** -c + b)
    held = (rates["accuracy_fit_ci_low"] <= truth) & (truth <= rates["accuracy_fit_ci_high"])
    assert held.mean() >= 0.85, held.mean()
    assert (rates["accuracy_fit_ci_low"] <= rates["accuracy_fit"]).all()


def test_every_entry_point_says_what_its_intervals_are_worth_at_few_seeds():
    from augworth.analysis import compare
    from augworth.analysis.questions import invariance, ood
    from augworth.analysis.search import best_points
    from augworth.analysis.stochasticity import stochasticity
    from bench.synthetic import invariance_frame, searched_sweeps, selected_sweeps, two_sets, views_frame

    def few(frame):
        return frame[frame["seed"] < 3]

    frame = few(synthetic_sweeps(2, shared=0.1, more={"other": (1.8, 0.045, 0.48)}))
    with pytest.warns(exchange.FewSeedsWarning, match=r"^exchange rates: intervals from 3 seeds.*\(0\.76 at 3\)"):
        exchange_rates(frame, n_bootstrap=50)
    with pytest.warns(exchange.FewSeedsWarning, match=r"^compare: intervals from 3 seeds.*\(0\.77 at 3\)"):
        compare(frame, "crop", "other", n_bootstrap=50)
    with pytest.warns(exchange.FewSeedsWarning, match=r"^ood: intervals from 3 seeds"):
        ood(few(two_sets(2)), n_bootstrap=50)
    with pytest.warns(exchange.FewSeedsWarning, match=r"^invariance: intervals from 3 seeds"):
        invariance(few(invariance_frame(2, (1.5, 0.04, 0.5))), n_bootstrap=50)
    with pytest.warns(exchange.FewSeedsWarning, match=r"^stochasticity: intervals from 3 seeds.*\(0\.77 at 3\)"):
        stochasticity(few(views_frame(2)), n_bootstrap=50)
    results, trials = searched_sweeps(2)
    kept = few(results)
    trials = trials.assign(cell_keys=[[k for k in keys if k in set(kept["cell_key"])] for keys in trials["cell_keys"]])
    with pytest.warns(exchange.FewSeedsWarning, match=r"^best: intervals from 3 seeds.*\(0\.32 at 3 for v of the best"):
        best_points(kept, trials, n_bootstrap=50)
    confirmed, trial_frame = selected_sweeps(2, trials=3, seeds=5, confirm=3)
    with pytest.warns(exchange.FewSeedsWarning, match=r"^best \(confirmed\): intervals from 3 seeds.*\(0\.90 at 3"):
        best_points(confirmed, trial_frame, confirm_seeds=3, n_bootstrap=50)


def test_a_tables_family_wise_p_holds_its_error_over_every_claim_and_still_finds_real_ones():
    from augworth.analysis.paired import max_t, sign_flip

    rng = np.random.default_rng(0)
    any_false, any_false_alone, found = 0, 0, 0
    tables = 300
    for t in range(tables):
        seeds = rng.normal(0.0, 1.0, (10, 1))  # a seed's effect shared by a table's claims, as its cells share it
        d = 0.5 * seeds + rng.normal(0.0, 1.0, (10, 24))  # 24 claims (shifts x sizes), none true
        any_false += bool((max_t(d, t) < 0.05).any())
        any_false_alone += bool((sign_flip(d, t) < 0.05).any())
        real = d.copy()
        real[:, 0] += 2.5  # one claim true, and large
        found += bool(max_t(real, t)[0] < 0.05)
    assert any_false / tables <= 0.08, any_false / tables  # nominal 0.05 over the whole table
    assert any_false_alone / tables >= 0.4  # each claim tested alone: most tables claim something false
    assert found / tables >= 0.9
