"""The spec's `design:` block: train the grid's cells that shrink v's interval at the asked sizes fastest, and stop
when every interval is narrow enough or the budget is spent (`analysis/design.py` decides; this describes it).

    design:
      targets:                      # v of these treatments against the reference, at these sizes
        - {treatment: "crop(2)", sizes: [100, 400]}
      tolerance: 0.10               # resolved: the 95% interval's half-width ≤ 10 % of x + v ...
      floor: 1                      # ... or ≤ this many samples (v ≈ 0 at small x resolves too)
      budget: {cells: 200}          # and/or {hours: 3.5}: the cells' summed training hours
      candidates: {sizes: [...], seeds: [...]}   # what the design may train; default: the grid's axes
      start: {sizes: [...], seeds: 2}            # the paired start; default: 4 log-spaced candidate sizes

A treatment is named as the tables print it ('crop(2)', 'crop(2) [fixed 4]') or by its augmentation's name
where that names one treatment of the grid (checked once the grid is expanded). The design's cells are the
grid's: the same keys, rows and store; only which are trained, and when, is the design's.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt

from .strict import LocatedError, Strict

Spec = Any  # search_spaces.spec.Spec, which imports this module


class DesignTarget(Strict):
    treatment: str
    sizes: Annotated[list[PositiveFloat], Field(min_length=1)]


class DesignBudget(Strict):
    cells: PositiveInt | None = None
    hours: PositiveFloat | None = None  # the design's cells' summed training time


class DesignCandidates(Strict):
    sizes: Annotated[list[PositiveInt], Field(min_length=3)] | None = None  # None: the grid's data_sizes
    seeds: Annotated[list[NonNegativeInt], Field(min_length=2)] | None = None  # None: the grid's seeds


class DesignStart(Strict):
    sizes: Annotated[list[PositiveInt], Field(min_length=3)] | None = None  # None: 4 log-spaced candidate sizes
    seeds: Annotated[int, Field(ge=2)] = 2


class DesignSpec(Strict):
    targets: Annotated[list[DesignTarget], Field(min_length=1)]
    reference: str = "none"
    tolerance: Annotated[float, Field(gt=0.0)] = 0.10
    floor: Annotated[float, Field(ge=0.0)] = 1.0
    eval_set: str = "test"
    budget: DesignBudget = DesignBudget()
    candidates: DesignCandidates = DesignCandidates()
    start: DesignStart = DesignStart()
    explore: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1  # the share of picks spread uniformly
    seed: NonNegativeInt = 0

    def sizes(self, spec: Spec) -> list[int]:
        return sorted(self.candidates.sizes or spec.data_sizes)

    def seeds(self, spec: Spec) -> list[int]:
        return list(self.candidates.seeds or spec.seeds)


def check_design(spec: Spec) -> None:
    """What the block must agree with in the rest of the spec (raised as LocatedError under `design`)."""
    design: DesignSpec | None = spec.design
    if design is None:
        return
    if spec.search is not None:
        raise LocatedError("a sweep has a design or a search, not both", ("design",))
    if spec.data_sizes is None:
        raise LocatedError("a design needs data_sizes (its targets and candidates are sizes), not data_fractions",
                           ("design",))
    for key, chosen, axis in (("sizes", design.candidates.sizes, spec.data_sizes),
                              ("seeds", design.candidates.seeds, spec.seeds)):
        for i, value in enumerate(chosen or ()):
            if value not in axis:
                raise LocatedError(f"{value} is not in the grid's {'data_sizes' if key == 'sizes' else 'seeds'}",
                                   ("design", "candidates", key, i))
    sizes, seeds = design.sizes(spec), design.seeds(spec)
    if len(sizes) < 3:
        raise LocatedError(f"a curve needs 3 sizes; the design may use {len(sizes)}", ("design", "candidates", "sizes"))
    if len(seeds) < design.start.seeds:
        raise LocatedError(f"the start needs {design.start.seeds} seeds; the design may use {len(seeds)}",
                           ("design", "start", "seeds"))
    for i, size in enumerate(design.start.sizes or ()):
        if size not in sizes:
            raise LocatedError(f"{size} is not a candidate size ({', '.join(map(str, sizes))})",
                               ("design", "start", "sizes", i))
    for i, target in enumerate(design.targets):
        for j, wanted in enumerate(target.sizes):
            if not sizes[0] <= wanted <= sizes[-1]:
                raise LocatedError(f"{wanted:g} is outside the candidate sizes ({sizes[0]} to {sizes[-1]})",
                                   ("design", "targets", i, "sizes", j))
    labels = [request["label"] for request in spec.eval_requests()]
    if design.eval_set not in labels:
        raise LocatedError(f"{design.eval_set!r} is not one of the spec's eval sets ({', '.join(labels)})",
                           ("design", "eval_set"))
    if design.reference not in {a.policy for a in spec.augmentations}:
        raise LocatedError(f"{design.reference!r} is not one of the spec's augmentations", ("design", "reference"))
