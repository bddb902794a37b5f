"""What an adaptive design (`design.py`) knows about its targets: x + v at each target size with its seed-clustered
interval, and how much one more cell would shrink it (a linearised, Fisher-information score).

Arms: each target treatment and the reference, one power law each, fitted on the arm's final points. x + v at
a target x is f_ref⁻¹(f_arm(x)); its interval is the expanded percentile interval over whole-seed resamples,
one draw shared by every arm (`intervals.py`), as `exchange_rates` computes it at measured sizes.

The score: the arm's and the reference's parameters θ = (a, b, c) each, stacked, and their Fisher information
I = Σ_seeds J_sᵀ V_s⁻¹ J_s, a block per seed, because a seed's cells are not independent: its subset and initial
weights scale every arm's reducible error at every size (`SeedNoise`: shared by the arms, own to one, and a
cell's own noise), so V_s is that seed's covariance and J_s = ∂e/∂θ at its cells. One more cell (arm, size,
seed) changes one block; the variance of g = log(x + v), ∇gᵀ I⁻¹ ∇g, falls by the difference. (Treating cells
as independent, one cell of a seed at a size where no other seed is measured was ranked high, and in fresh
draws of the same cells it widened the spread of x + v: its seed's scale is all that size's mean says.) A
cell's outcome does not enter, so cells still running count as if done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from augworth.analysis.fit import MIN_SIZES, fit_batch, inverse_power_law, power_law
from augworth.analysis.intervals import expanded_tail, percentile_interval, seed_replicates

REFERENCE_ARM = "\x00reference"
_RIDGE = 1e-9  # relative ridge on the information matrix: an arm with few sizes is poorly known, not singular


@dataclass(frozen=True)
class ArmFits:
    """Per arm: its (a, b, c) (NaN where it has fewer than MIN_SIZES sizes or the fit failed) and the fit's
    weighted squared error (what the lack-of-fit test of the paper's family needs)."""

    params: dict[str, tuple[float, float, float]]
    sse: dict[str, float]

    def ok(self, arm: str) -> bool:
        return arm in self.params and bool(np.all(np.isfinite(self.params[arm])))


def fit_arms(points: pd.DataFrame) -> ArmFits:
    """`points`: final rows with arm, data_size, seed, accuracy."""
    params: dict[str, tuple[float, float, float]] = {}
    sse: dict[str, float] = {}
    for arm, rows in points.groupby("arm", sort=True):
        if rows["data_size"].nunique() < MIN_SIZES:
            params[str(arm)], sse[str(arm)] = (np.nan, np.nan, np.nan), np.nan
            continue
        sizes = rows["data_size"].to_numpy(float)[None, :]
        errors = 1.0 - rows["accuracy"].to_numpy(float)[None, :]
        a, b, c, fit_sse, _ = fit_batch(sizes, errors, np.ones_like(sizes))
        params[str(arm)], sse[str(arm)] = (float(a[0]), float(b[0]), float(c[0])), float(fit_sse[0])
    return ArmFits(params, sse)


def x_equiv(x: float, arm: tuple[float, float, float], ref: tuple[float, float, float]) -> float:
    """x + v = f_ref⁻¹(f_arm(x)) (+inf where the arm is at or below the reference's asymptote)."""
    return float(inverse_power_law(power_law(x, *arm), *ref))


def target_intervals(points: pd.DataFrame, targets: list[tuple[str, float]], fits: ArmFits, *, level: float,
                     n_bootstrap: int, seed: int) -> pd.DataFrame:
    """Per (arm, size) target: x + v, its interval (low, high) and the seeds it rests on (those the arm and the
    reference share); NaN where an arm or the reference has no fit."""
    rows = []
    arms = sorted({arm for arm, _ in targets} | {REFERENCE_ARM})
    fitted = [arm for arm in arms if fits.ok(arm)]
    replicates = None
    if n_bootstrap and REFERENCE_ARM in fitted and len(fitted) > 1:
        frame = points[points["arm"].isin(fitted)].assign(_group=0)
        frame["_fit"] = frame["arm"].map({arm: i for i, arm in enumerate(fitted)})
        frame = frame.sort_values(["_fit", "data_size"], kind="stable", ignore_index=True)
        replicates = seed_replicates(frame, list(range(len(fitted))), n_bootstrap, seed)
    seeds = points.groupby("arm")["seed"].agg(lambda s: set(s.tolist()))
    for arm, x in targets:
        shared = len(seeds.get(arm, set()) & seeds.get(REFERENCE_ARM, set()))
        row = {"arm": arm, "size": float(x), "x_equiv": np.nan, "low": np.nan, "high": np.nan, "seeds": shared}
        if fits.ok(arm) and fits.ok(REFERENCE_ARM):
            row["x_equiv"] = x_equiv(x, fits.params[arm], fits.params[REFERENCE_ARM])
            if replicates is not None:
                (a, b, c) = replicates.params[fitted.index(arm)]
                (ra, rb, rc) = replicates.params[fitted.index(REFERENCE_ARM)]
                values = inverse_power_law(power_law(x, a, b, c), ra, rb, rc)[:, None]
                low, high = percentile_interval(values, expanded_tail(shared, level))
                row["low"], row["high"] = float(low[0]), float(high[0])
        rows.append(row)
    return pd.DataFrame(rows, columns=["arm", "size", "x_equiv", "low", "high", "seeds"])


def family_x_equiv(points: pd.DataFrame, targets: list[tuple[str, float]], fits: ArmFits) -> pd.DataFrame:
    """Per target, x + v where the reference is fitted in the other curve families (`families.py`: pure power
    law, exponential) and the treatment's error at x is its power law's, NaN where that family misfits the
    reference's size means (lack-of-fit p < MISFIT); `power_fits`: whether the paper's family fits them."""
    from augworth.analysis.families import MISFIT, family_inverse, fit_family, lack_of_fit_p, within_size

    ref = points[points["arm"] == REFERENCE_ARM]
    out = pd.DataFrame({"power_fits": True, "pure_power": np.nan, "exponential": np.nan}, index=range(len(targets)))
    if ref["data_size"].nunique() < MIN_SIZES or not fits.ok(REFERENCE_ARM):
        return out
    sizes = ref["data_size"].to_numpy(float)[None, :]
    errors = 1.0 - ref["accuracy"].to_numpy(float)[None, :]
    weights = np.ones_like(sizes)
    within = within_size(sizes, errors, weights)
    n_points, n_sizes = np.array([sizes.size], float), np.array([ref["data_size"].nunique()], float)

    def fits_means(sse: np.ndarray, family: str) -> bool:
        return bool(np.nan_to_num(lack_of_fit_p(sse, within, n_points, n_sizes, family), nan=1.0)[0] >= MISFIT)

    out["power_fits"] = fits_means(np.array([fits.sse[REFERENCE_ARM]]), "power")  # fitted already: `fit_arms`
    for family in ("pure_power", "exponential"):
        a, b, c, sse = fit_family(sizes, errors, weights, family)
        for i, (arm, x) in enumerate(targets):
            if fits_means(sse, family) and fits.ok(arm):
                e_arm = np.clip(power_law(x, *fits.params[arm]), 0.0, 1.0)
                out.loc[i, family] = float(family_inverse(np.array([e_arm]), a, b, c, family)[0])
    return out


@dataclass(frozen=True)
class SeedNoise:
    """What moves a cell's error besides its curve: e = f(x) + r(x)·(u + w) + ε, r(x) = a·x^(−c) the reducible
    error, u a seed's effect shared by every arm (its subset, initial weights), w its effect on one arm, ε the
    cell's own noise. Variances, in error units squared."""

    noise: float
    shared: float
    own: float


def seed_noise(points: pd.DataFrame, fits: ArmFits) -> SeedNoise:
    """Moment estimates from the arms' residuals: each seed's scale u + w per arm by least squares on its cells,
    their covariance across arms (shared), the rest of their variance (own), and what is left (noise)."""
    scales: dict[str, pd.Series] = {}
    leftover, dof, spread = 0.0, 0, []
    for arm, rows in points.groupby("arm", sort=True):
        if not fits.ok(str(arm)):
            continue
        a, b, c = fits.params[str(arm)]
        x, e = rows["data_size"].to_numpy(float), 1.0 - rows["accuracy"].to_numpy(float)
        r = a * x ** -c
        frame = pd.DataFrame({"seed": rows["seed"].to_numpy(), "rr": r * (e - power_law(x, a, b, c)), "r2": r * r})
        sums = frame.groupby("seed")[["rr", "r2"]].sum()
        u = sums["rr"] / sums["r2"]
        scales[str(arm)] = u
        leftover += float(np.sum((e - power_law(x, a, b, c) - r * u.reindex(rows["seed"]).to_numpy()) ** 2))
        dof += max(len(rows) - len(u) - 3, 0)
        spread.append(1.0 / sums["r2"])
    noise = leftover / dof if dof else 1e-4
    if not scales:
        return SeedNoise(noise, 0.0, 0.0)
    total = np.nanmean([float(u.var(ddof=1)) for u in scales.values() if len(u) > 1] or [0.0])
    total -= noise * float(np.mean(pd.concat(spread)))  # the part of each scale's scatter that is noise
    arms = sorted(scales)
    shared = [float(np.cov(scales[p].loc[common], scales[q].loc[common])[0, 1])
              for i, p in enumerate(arms) for q in arms[i + 1:]
              if len(common := scales[p].index.intersection(scales[q].index)) >= 3]
    shared_var = max(float(np.mean(shared)), 0.0) if shared else 0.0
    return SeedNoise(max(noise, 1e-8), shared_var, max(float(total) - shared_var, 0.0))


@dataclass(frozen=True)
class PairCells:
    """The cells of one arm and the reference (arm index 0 or 1, size, seed) under the fit the analysis makes:
    least squares on every cell, so the variance of its parameters is the sandwich A⁻¹ B A⁻¹ with A = JᵀJ and
    B = Jᵀ V J, V the cells' covariance (a seed's cells move together: `SeedNoise`)."""

    params: tuple[tuple[float, float, float], tuple[float, float, float]]
    noise: SeedNoise
    jac: np.ndarray  # (n, 6)
    reducible: np.ndarray  # (n,) r(x) of each cell's arm
    arm: np.ndarray  # (n,)
    seed: np.ndarray  # (n,)
    a: np.ndarray  # JᵀJ
    b: np.ndarray  # Jᵀ V J

    @classmethod
    def of(cls, cells: list[tuple[int, float, int]], params: tuple[tuple[float, float, float],
                                                                   tuple[float, float, float]],
           noise: SeedNoise) -> PairCells:
        arm = np.array([c[0] for c in cells], dtype=int)
        seed = np.array([c[2] for c in cells], dtype=int)
        jac, reducible = _rows(cells, params)
        cov = noise.noise * np.eye(len(cells)) + (seed[:, None] == seed[None, :]) * np.outer(reducible, reducible) * (
            noise.shared + noise.own * (arm[:, None] == arm[None, :]))
        a = jac.T @ jac
        return cls(params, noise, jac, reducible, arm, seed, a + _RIDGE * max(float(np.trace(a)), 1e-12) * np.eye(6),
                   jac.T @ cov @ jac)

    def variance(self, grad: np.ndarray, extra: tuple[int, float, int] | None = None) -> float:
        """Var(g) ≈ ∇gᵀ A⁻¹ B A⁻¹ ∇g, with one more cell (arm index, size, seed) where `extra` is given."""
        a, b = self.a, self.b
        if extra is not None:
            (j,), (r,) = _rows([extra], self.params)
            same = (self.seed == extra[2]) * self.reducible * r * (
                self.noise.shared + self.noise.own * (self.arm == extra[0]))
            cross = self.jac.T @ same
            own = self.noise.noise + r * r * (self.noise.shared + self.noise.own)
            a = a + np.outer(j, j)
            b = b + np.outer(j, cross) + np.outer(cross, j) + own * np.outer(j, j)
        solved = np.linalg.solve(a, grad)
        return float(solved @ b @ solved)


def _rows(cells: list[tuple[int, float, int]], params: tuple[tuple[float, float, float], ...]
          ) -> tuple[np.ndarray, np.ndarray]:
    jac = np.zeros((len(cells), 3 * len(params)))
    reducible = np.zeros(len(cells))
    for row, (arm, size, _) in enumerate(cells):
        a, _, c = params[arm]
        jac[row, 3 * arm:3 * arm + 3] = jacobian(np.array([size]), a, c)[0]
        reducible[row] = a * size ** -c
    return jac, reducible


def jacobian(x: np.ndarray, a: float, c: float) -> np.ndarray:
    """∂e/∂(a, b, c) of e = a·x^(−c) + b at sizes x: (n, 3)."""
    x = np.asarray(x, dtype=float)
    p = x ** -c
    return np.stack([p, np.ones_like(p), -a * p * np.log(x)], axis=-1)


def log_gradient(x: float, arm: tuple[float, float, float], ref: tuple[float, float, float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """∇ of g = log(x + v) with respect to the arm's (a, b, c) and the reference's, by central differences on
    log parameters (a, c) and absolute ones (b). Where x + v is infinite, g is the log of the gap between the
    arm's error at x and the reference's asymptote, which the same cells narrow."""
    def g(p: np.ndarray, q: np.ndarray) -> float:
        gap = power_law(x, *p) - q[1]
        if gap <= 0:
            return float(np.log(max(abs(gap), 1e-12)))
        return float(np.log(inverse_power_law(power_law(x, *p), *q)))

    base_p, base_q = np.array(arm, dtype=float), np.array(ref, dtype=float)
    grads = []
    for base, other, first in ((base_p, base_q, True), (base_q, base_p, False)):
        grad = np.zeros(3)
        for i in range(3):
            step = 1e-4 * max(abs(base[i]), 1e-3)
            up, down = base.copy(), base.copy()
            up[i] += step
            down[i] -= step
            hi = g(up, other) if first else g(other, up)
            lo = g(down, other) if first else g(other, down)
            grad[i] = (hi - lo) / (2 * step)
        grads.append(grad)
    return grads[0], grads[1]


