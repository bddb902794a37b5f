"""The spec's `search:` block (adaptive mode): which policies Optuna searches, over which parameters, for how
many trials, and the studies that follow from the grid's other axes.

A searched policy gets no grid cells. It gets one study per point of the grid's other axes (data size, model,
width, views, invariance); one trial of a study is one parameter point, trained at every seed of the spec, and
each (point, seed) is an ordinary cell. Once a study has its trials, its best point is trained again on seeds
the search never used (`confirm`): the best of many trials is not an estimate of itself, the confirmation is.
Optuna itself is imported by the orchestrator only: this package describes the search as plain data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from .cells import Cell
from .secrets import written_secret
from .strict import LocatedError, Strict

Spec = Any  # search_spaces.spec.Spec, which imports this module (so no import back, not even for typing)

# What a search may choose, and the cell field each sets. Bounds of the optimiser's settings are checked here;
# a policy's strength range is its registry entry's (checked by the orchestrator).
SEARCHABLE: dict[str, str] = {"strength": "strength", "lr": "lr", "momentum": "momentum",
                              "weight_decay": "weight_decay"}
OPTIMIZER_BOUNDS: dict[str, tuple[float, float, bool]] = {  # (low, high, high excluded)
    "lr": (0.0, math.inf, False), "momentum": (0.0, 1.0, True), "weight_decay": (0.0, math.inf, False)}


class ParamRange(Strict):
    low: float | int
    high: float | int
    log: bool = False  # sample uniformly in log space (learning rates)

    @model_validator(mode="after")
    def _ordered(self) -> ParamRange:
        if self.low >= self.high:
            raise LocatedError(f"low ({self.low:g}) must be below high ({self.high:g})", ("low",))
        if self.log and self.low <= 0:
            raise LocatedError(f"log needs low > 0, got {self.low:g}", ("low",))
        return self


class Objective(Strict):
    eval_set: str = "test"  # the label whose mean final accuracy over the seeds is maximised


class Confirm(Strict):
    """The study's best point trained again on fresh seeds, as ordinary cells: what `augworth best` reports."""

    # how many fresh seeds (those after the spec's largest), or which; None: as many as the spec's seeds; 0: none
    seeds: Annotated[int, Field(ge=0)] | Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)] | None \
        = None
    # the eval set the confirmation is reported on; None: the objective's (selected and confirmed on one set)
    eval_set: str | None = None


class Sampler(Strict):
    name: Literal["tpe", "gp", "random"] = "tpe"
    seed: Annotated[int, Field(ge=0)] = 0


class SearchSpec(Strict):
    policies: Annotated[list[str], Field(min_length=1)] | None = None  # None: every augmentation but `none`
    params: Annotated[dict[str, ParamRange], Field(min_length=1)]
    trials: Annotated[int, Field(gt=0)]  # finished trials (complete or pruned) per study
    objective: Objective = Objective()  # its eval set selects the best point
    confirm: Confirm = Confirm()
    sampler: Sampler = Sampler()
    pruner: Literal["none", "successive_halving"] = "none"
    # None: a journal file <store>/<sweep>/optuna.log; else a journal path or an RDB URL, with any password
    # written as ${VAR} (filled from the environment where the storage is opened; secrets.py)
    storage: str | None = None

    @model_validator(mode="after")
    def _no_written_secret(self) -> SearchSpec:
        secret = written_secret(self.storage) if self.storage else None
        if secret:
            raise LocatedError(f"{secret} written here would be frozen into the sweep's spec.yaml and shown: write "
                                "it as ${VAR} and set VAR in the environment of the driver", ("storage",))
        return self

    @model_validator(mode="after")
    def _known(self) -> SearchSpec:
        for name, bounds in self.params.items():
            if name not in SEARCHABLE:
                raise LocatedError(f"cannot search {name!r} (searchable: {', '.join(SEARCHABLE)})", ("params", name))
            if name in OPTIMIZER_BOUNDS:
                lo, hi, open_high = OPTIMIZER_BOUNDS[name]
                if bounds.low < lo or (name == "lr" and bounds.low == 0):
                    raise LocatedError(f"{name} must be {'>' if name == 'lr' else '>='} {lo:g}, got low "
                                        f"{bounds.low:g}", ("params", name, "low"))
                if bounds.high > hi or (open_high and bounds.high == hi):
                    raise LocatedError(f"{name} must be {'<' if open_high else '<='} {hi:g}, got high "
                                        f"{bounds.high:g}", ("params", name, "high"))
        return self

    def grid_fields(self) -> dict[str, Any]:
        """What must match for a resumed search to be the same one: the storage too, where its studies live (a
        resume that opened another storage would start every study from zero while `status` and `best` read
        the old one)."""
        return self.model_dump(mode="json")


def searched_policies(spec: Spec) -> list[str]:
    """The policies the spec's search block searches (none without one)."""
    if spec.search is None:
        return []
    if spec.search.policies is not None:
        return list(spec.search.policies)
    return list(dict.fromkeys(a.policy for a in spec.augmentations if a.policy != "none"))


def confirm_seeds(spec: Spec) -> list[int]:
    """The seeds a study's best point is confirmed on: the spec's list, or that many seeds after the largest seed
    of the grid (which `--extend` cannot change on a searched sweep), so the search never trained on them."""
    if spec.search is None:
        return []
    wanted = spec.search.confirm.seeds
    if isinstance(wanted, list):
        return list(wanted)
    count = len(spec.seeds) if wanted is None else wanted
    return [max(spec.seeds) + 1 + i for i in range(count)]


def confirm_eval_set(spec: Spec) -> str:
    """The eval set the confirmation is reported on."""
    assert spec.search is not None
    return str(spec.search.confirm.eval_set or spec.search.objective.eval_set)


def check_search(spec: Spec) -> None:
    """The search block against the rest of the spec (called by the spec's own validator)."""
    search = spec.search
    if search is None:
        return
    policies = [a.policy for a in spec.augmentations]
    for i, policy in enumerate(search.policies or ()):
        if policy == "none":
            raise LocatedError("none is the reference: it stays a grid policy", ("search", "policies", i))
        if policy not in policies:
            raise LocatedError(f"{policy!r} is not in augmentations", ("search", "policies", i))
        if policy in search.policies[:i]:
            raise LocatedError(f"duplicate policy {policy!r}", ("search", "policies", i))
    if not searched_policies(spec):
        raise LocatedError("no policy to search: augmentations has only none", ("search",))
    seen: dict[str, int] = {}
    for i, aug in enumerate(spec.augmentations):
        if aug.policy not in searched_policies(spec):
            continue
        if aug.policy in seen:  # one study per grid point: two entries would pool two treatments in it
            raise LocatedError(f"{aug.policy!r} is searched and listed twice (also at index {seen[aug.policy]})",
                                ("augmentations", i, "policy"))
        seen[aug.policy] = i
        if "strength" in search.params and aug.strength is not None:
            raise LocatedError("strength is searched (search.params.strength): leave it out here",
                                ("augmentations", i, "strength"))
        if len(aug.strengths()) > 1:
            raise LocatedError("a searched policy takes one strength (or search it: params.strength)",
                                ("augmentations", i, "strength"))
    if search.storage is not None and "://" not in search.storage and not search.storage.startswith("/"):
        raise LocatedError("give an absolute path (or a database URL): status and best run from anywhere",
                            ("search", "storage"))
    labels = [e["label"] for e in spec.eval_requests()]
    if search.objective.eval_set not in labels:
        raise LocatedError(f"{search.objective.eval_set!r} is not an eval set of this spec (eval sets: "
                            f"{', '.join(labels)})", ("search", "objective", "eval_set"))
    if search.confirm.eval_set is not None and search.confirm.eval_set not in labels:
        raise LocatedError(f"{search.confirm.eval_set!r} is not an eval set of this spec (eval sets: "
                            f"{', '.join(labels)})", ("search", "confirm", "eval_set"))
    if isinstance(search.confirm.seeds, list):
        for i, seed in enumerate(search.confirm.seeds):
            if seed in spec.seeds:
                raise LocatedError(f"seed {seed} is one of the spec's seeds: the search trains on those, so it "
                                    "would confirm nothing; give seeds the spec does not list",
                                    ("search", "confirm", "seeds", i))
            if seed in search.confirm.seeds[:i]:
                raise LocatedError(f"duplicate seed {seed}", ("search", "confirm", "seeds", i))
    if search.pruner != "none" and spec.budget.eval_every is None:
        raise LocatedError("pruning decides on intermediate evaluations: set budget.eval_every",
                            ("search", "pruner"))


@dataclass(frozen=True)
class Study:
    """One Optuna study: a searched policy at one point of the grid's other axes. `points` are the grid's
    points for it, one per seed (strength at the spec's value, which a searched strength replaces)."""

    name: str
    policy: str
    data_size: int
    points: tuple[Mapping[str, Any], ...]
    make_cell: Callable[[Mapping[str, Any]], Cell]

    @property
    def seeds(self) -> list[int]:
        return [int(p["seed"]) for p in self.points]

    def cells(self, params: Mapping[str, Any]) -> list[Cell]:
        """The trial's cells, one per seed, with the searched parameters in place of the spec's values."""
        changes = {SEARCHABLE[k]: float(v) for k, v in params.items()}
        cells = [self.make_cell(dict(p) | changes) for p in self.points]
        return list({c.cell_key: c for c in cells}.values())

    def confirm_cells(self, params: Mapping[str, Any], seeds: Iterable[int]) -> list[Cell]:
        """The point `params` again, one cell per seed of `seeds` (confirm_seeds: none of the search's)."""
        changes = {SEARCHABLE[k]: float(v) for k, v in params.items()}
        cells = [self.make_cell(dict(self.points[0]) | changes | {"seed": int(s)}) for s in seeds]
        return list({c.cell_key: c for c in cells}.values())


def study_name(sweep: str, point: Mapping[str, Any], varying: Iterable[str]) -> str:
    """'<sweep>/<policy>/n<size>', then the axes of the spec that take more than one value."""
    parts = [sweep, str(point["augmentation"]), f"n{point['data_size']}"]
    varying = set(varying)
    if "model" in varying:
        parts.append(f"{point['model']}-w{point['width']}")
    if "views" in varying:
        parts.append(str(point["views"]) + (f"-{point['views_r']}" if point.get("views_r") else "")
                     + ("-clean" if point.get("views_first_clean") else ""))
    if "invariance" in varying:
        parts.append(f"inv-{point['invariance']}")
    return "/".join(parts)


def group_studies(spec: Spec, points: Iterable[Mapping[str, Any]],
                  make_cell: Callable[[Mapping[str, Any]], Cell]) -> list[Study]:
    """The searched policies' grid points (one per seed) grouped into studies, in the grid's order."""
    points = list(points)
    models = {(p["model"], p["width"]) for p in points}
    views = {(p["views"], p["views_r"], p["views_first_clean"]) for p in points}
    counts = (("model", len(models)), ("views", len(views)), ("invariance", len({p["invariance"] for p in points})))
    varying = [name for name, n in counts if n > 1]
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for p in points:
        by_name.setdefault(study_name(spec.name, p, varying), []).append(p)
    return [Study(name, ps[0]["augmentation"], int(ps[0]["data_size"]), tuple(ps), make_cell)
            for name, ps in by_name.items()]
