"""Synthetic sweeps with a known truth and the messy structure of real ones: seeds shared across treatments.

Each sweep is one group (its `width` column numbers it), so one `exchange_rates` call fits many sweeps at
once. Errors follow known power laws; a seed moves every treatment's error at every size of that seed
(`shared`, a fraction of the reducible error), and each treatment on its own (`own`), plus independent noise
per cell (`noise`, absolute).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

REF = (2.0, 0.05, 0.45)  # a, b, c of the reference's error e(x) = a·x^(−c) + b
AUG = (1.5, 0.04, 0.50)
SIZES = (50, 100, 200, 400, 800, 1600)


@dataclass(frozen=True)
class Curve:
    """A true error curve outside the power-law family: error(x) = floor + reducible(x), reducible(x) > 0
    falling with x. Seed effects scale the reducible part, as they scale a·x^(−c) of a power law."""

    reducible: Callable[[np.ndarray], np.ndarray]
    floor: float = 0.0

    def error(self, x: np.ndarray) -> np.ndarray:
        return self.floor + self.reducible(np.asarray(x, dtype=float))


def two_power_laws(a1: float, c1: float, a2: float, c2: float) -> Curve:
    """a1·x^(−c1) + a2·x^(−c2), no asymptote: with c2 small, a power law with an asymptote fits it closely over
    a few decades, and every true v is finite."""
    return Curve(lambda x: a1 * x ** -c1 + a2 * x ** -c2)


def exponential_saturation(floor: float, a: float, scale: float) -> Curve:
    """floor + a·exp(−x / scale): saturates faster than any power law."""
    return Curve(lambda x: a * np.exp(-x / scale), floor)


def curve_of(truth) -> Curve:
    if isinstance(truth, Curve):
        return truth
    a, b, c = truth
    return Curve(lambda x: a * x ** -c, b)


def true_v(x: np.ndarray, ref=REF, aug=AUG) -> np.ndarray:
    """v(x) = f_ref⁻¹(f_aug(x)) − x of the true curves (+inf where the treatment is at or below the reference's
    floor); a curve outside the family is inverted numerically, on sizes up to 1e15."""
    x = np.asarray(x, dtype=float)
    if not isinstance(ref, Curve) and not isinstance(aug, Curve):
        (ra, rb, rc), (a, b, c) = ref, aug
        e = a * x ** -c + b
        with np.errstate(invalid="ignore"):
            return np.where(e <= rb, np.inf, ((e - rb) / ra) ** (-1 / rc) - x)
    ref, aug = curve_of(ref), curve_of(aug)
    grid = np.geomspace(1e-3, 1e15, 200_001)
    e_ref = ref.error(grid)  # falling with size
    e = aug.error(x)
    found = np.interp(-e, -e_ref, grid)  # the size whose reference error is e
    return np.where(e <= ref.floor, np.inf, np.where(e >= e_ref[0], grid[0], found)) - x


def synthetic_sweeps(n_sweeps: int, *, seeds: int = 10, shared: float = 0.0, own: float = 0.0,
                     noise: float = 0.005, subset: str = "nested", rng_seed: int = 0, ref=REF, aug=AUG,
                     sizes=SIZES, more: dict | None = None, persistent: float = 0.0) -> pd.DataFrame:
    """`ref`, `aug` and `more` (further treatments, name -> truth): (a, b, c) of a power law, or a `Curve`; the same
    seed structure for all. `persistent`: a seed's effect that no subset redraws (its initial weights and batch
    order), shared by every treatment at every size, independent subsets too."""
    rng = np.random.default_rng(rng_seed)
    frames = []
    for sweep in range(n_sweeps):
        u = rng.normal(0.0, shared, seeds)  # per seed, shared by every treatment (and size, when nested)
        kept = rng.normal(0.0, persistent, seeds) if persistent else np.zeros(seeds)  # per seed, at every size
        for name, truth in (("none", ref), ("crop", aug), *(more or {}).items()):
            curve = curve_of(truth)
            w = rng.normal(0.0, own, seeds)  # per seed, this treatment's own
            for x in sizes:
                if subset == "independent":  # another subset at each size: the seed's effect is redrawn
                    u_x, w_x = rng.normal(0.0, shared, seeds), rng.normal(0.0, own, seeds)
                else:
                    u_x, w_x = u, w
                reducible = curve.reducible(np.asarray(float(x)))
                err = curve.floor + reducible * (1.0 + u_x + w_x + kept) + rng.normal(0.0, noise, seeds)
                frames.append(pd.DataFrame({
                    "width": sweep, "subset": subset, "augmentation": name, "data_size": x,
                    "seed": np.arange(seeds), "eval_set": "test", "accuracy": np.clip(1.0 - err, 0.0, 1.0)}))
    return pd.concat(frames, ignore_index=True)


# ----- frames for the paper's questions (analysis/questions.py, analysis/stochasticity.py) -------------------

SHIFTED_REF, SHIFTED_AUG = (2.0, 0.10, 0.40), (1.0, 0.08, 0.45)  # the truth on the shifted set


def two_sets(n: int, aug_shifted=SHIFTED_AUG, ref_shifted=SHIFTED_REF, rng_seed: int = 1,
             shifted_rng_seed: int | None = None) -> pd.DataFrame:
    """The same cells seen on two eval sets: one seed structure (the same draws, unless `shifted_rng_seed`
    draws the shifted set's seed effects and noise afresh), two truths."""
    test = synthetic_sweeps(n, shared=0.1, own=0.05, rng_seed=rng_seed).assign(eval_set="test")
    shifted = synthetic_sweeps(n, shared=0.1, own=0.05, rng_seed=rng_seed if shifted_rng_seed is None
                               else shifted_rng_seed, ref=ref_shifted, aug=aug_shifted)
    return pd.concat([test, shifted.assign(eval_set="c_noise")], ignore_index=True)


def invariance_frame(n: int, inv_truth, rng_seed: int = 2, ref=REF, aug=AUG) -> pd.DataFrame:
    frame = synthetic_sweeps(n, shared=0.1, own=0.05, rng_seed=rng_seed, more={"inv": inv_truth}, ref=ref, aug=aug)
    frame = frame.assign(eval_set="test", invariance="none")
    model = frame["augmentation"] == "inv"
    frame.loc[model, "augmentation"], frame.loc[model, "invariance"] = "none", "center_of_mass"
    return frame


def views_frame(n: int = 6, ref=REF, aug=AUG, fixed: tuple | None = None) -> pd.DataFrame:
    """Random views (`aug`), fixed views r = 1 and 4 (`fixed`: their truths), the reference `ref`."""
    f1, f4 = fixed or ((1.9, 0.05, 0.45), (1.7, 0.05, 0.45))  # fixed views worth less than random (a 1.5)
    frame = synthetic_sweeps(n, shared=0.1, own=0.05, rng_seed=3, more={"f1": f1, "f4": f4}, ref=ref, aug=aug).assign(
        eval_set="test", views="random", views_r=np.nan)
    for name, r in (("f1", 1), ("f4", 4)):
        rows = frame["augmentation"] == name
        frame.loc[rows, ["augmentation", "views", "views_r"]] = ["crop", "fixed", r]
    rng = np.random.default_rng(0)
    frame["grad_noise"] = np.where(frame["views"] == "fixed", 1.0, 1.5) + rng.normal(0.0, 0.1, len(frame))
    frame["flatness"] = 2.0 * (1.0 - frame["accuracy"]) + rng.normal(0.0, 0.005, len(frame))
    return frame.assign(cell_key=[f"cell{i}" for i in range(len(frame))], step=300, final=True)


SEARCHED_SIZE = 200


def searched_sweeps(n: int, rng_seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`n` sweeps (one per width): none at every size, and crop at SEARCHED_SIZE as the cells of one search
    trial (its study `s<width>/crop/n200`); and the trials, as `analysis.search.read_trials` gives them."""
    frame = synthetic_sweeps(n, shared=0.1, own=0.05, rng_seed=rng_seed)
    frame = frame[(frame["augmentation"] == "none") | (frame["data_size"] == SEARCHED_SIZE)].reset_index(drop=True)
    frame["cell_key"] = [f"c{i}" for i in range(len(frame))]
    crop = frame["augmentation"] == "crop"
    frame["search_study"] = np.where(crop, "s" + frame["width"].astype(str) + "/crop/n200", None)
    frame["search_trial"] = np.where(crop, 0, np.nan)
    trials = [{"study": study, "number": 0, "state": "complete", "value": cells["accuracy"].mean(),
               "params": {"strength": 2.0}, "cell_keys": list(cells["cell_key"]), "pruned_at": None}
              for study, cells in frame[crop].groupby("search_study")]
    return frame, pd.DataFrame(trials)


def selected_sweeps(n: int, *, trials: int, seeds: int = 5, confirm: int = 5, shared: float = 0.1,
                    own: float = 0.05, noise: float = 0.005, rng_seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`n` searched sweeps (one per width) in which every trial is the same point in truth (AUG at SEARCHED_SIZE):
    the reference `none` at every size and each trial's cells share the seeds' effects (`shared`, per seed, at every
    size and trial); a trial adds its own per seed (`own`) and each cell its noise. The best trial (the highest
    mean) is then confirmed on `confirm` fresh seeds, with fresh effects, as the orchestrator does. Returns the
    rows (with search_study, search_trial, search_confirm) and the trials, as `read_trials` gives them."""
    rng = np.random.default_rng(rng_seed)
    a, b, c = AUG
    truth = a * SEARCHED_SIZE ** -c
    rows, trial_rows = [], []
    for sweep in range(n):
        study = f"s{sweep}/crop/n{SEARCHED_SIZE}"
        u = rng.normal(0.0, shared, seeds)
        for x in SIZES:
            reducible = REF[0] * x ** -REF[2]
            err = REF[1] + reducible * (1.0 + u + rng.normal(0.0, own, seeds)) + rng.normal(0.0, noise, seeds)
            rows.append(pd.DataFrame({"width": sweep, "augmentation": "none", "data_size": x, "seed": np.arange(seeds),
                                      "accuracy": 1.0 - err, "search_study": None, "search_trial": np.nan,
                                      "search_confirm": None}))
        means = []
        for t in range(trials):
            err = b + truth * (1.0 + u + rng.normal(0.0, own, seeds)) + rng.normal(0.0, noise, seeds)
            rows.append(pd.DataFrame({"width": sweep, "augmentation": "crop", "data_size": SEARCHED_SIZE,
                                      "seed": np.arange(seeds), "accuracy": 1.0 - err, "search_study": study,
                                      "search_trial": t, "search_confirm": None}))
            means.append((1.0 - err).mean())
        best = int(np.argmax(means))
        fresh = np.arange(seeds, seeds + confirm)
        err = b + truth * (1.0 + rng.normal(0.0, shared, confirm) + rng.normal(0.0, own, confirm)) \
            + rng.normal(0.0, noise, confirm)
        rows.append(pd.DataFrame({"width": sweep, "augmentation": "crop", "data_size": SEARCHED_SIZE, "seed": fresh,
                                  "accuracy": 1.0 - err, "search_study": study, "search_trial": best,
                                  "search_confirm": True}))
        trial_rows.extend({"study": study, "number": t, "state": "complete", "value": m, "params": {"strength": 1.0},
                           "cell_keys": [f"w{sweep}t{t}s{s}" for s in range(seeds)], "pruned_at": None}
                          for t, m in enumerate(means))
    frame = pd.concat(rows, ignore_index=True).assign(eval_set="test", subset="nested")
    keys = np.where(frame["search_study"].notna() & frame["search_confirm"].isna(),
                    "w" + frame["width"].astype(str) + "t" + frame["search_trial"].fillna(0).astype(int).astype(str)
                    + "s" + frame["seed"].astype(str), "g" + frame.index.astype(str))
    frame["cell_key"] = keys
    return frame, pd.DataFrame(trial_rows)
