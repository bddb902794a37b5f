"""The spec's grid: its points in a stable order, the cells they resolve to, and how many there are.

One loop (`grid_points`) holds the grid's shape, so `expand_cells` (which needs the data set's pool) and
`grid_size` (which must not load any data) cannot disagree on what the grid is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .cells import Cell
from .search import Study, group_studies, searched_policies
from .spec import Spec, SpecError, spec_error


def resolve_sizes(spec: Spec, *, pool_size: int, num_classes: int, source: str = "spec",
                  text: str | None = None) -> list[int]:
    """Absolute training sizes; fractions are of the pool, rounded, with at least one image per class."""
    if spec.data_sizes is not None:
        for i, size in enumerate(spec.data_sizes):
            if size > pool_size:
                raise spec_error(f"{size} is larger than the training pool ({pool_size} images)",
                                 text=text, source=source, loc=("data_sizes", i))
        return list(spec.data_sizes)
    sizes = [min(pool_size, max(num_classes, round(f * pool_size))) for f in spec.data_fractions or ()]
    return list(dict.fromkeys(sizes))


def grid_points(
    spec: Spec,
    sizes: list[int],
    *,
    default_strength: Callable[[str], float | None],
    default_width: Callable[[str], int] | None,
    source: str = "spec",
    text: str | None = None,
    searched: bool = False,
) -> Iterator[dict[str, Any]]:
    """The grid's points as the Cell fields that vary, in a stable order (models, views, invariance, size, seed,
    treatment). `none` gets no fixed views: frozen views of un-augmented images are the images, the reference.
    Points that an entry of the spec's `exclude` matches are left out. The policies of the spec's `search` block
    have no grid points; `searched=True` gives theirs instead (the points of their studies, one per seed)."""
    treatments: list[tuple[str, float | None]] = []
    search = set(searched_policies(spec))
    for aug in spec.augmentations:
        if (aug.policy in search) != searched:
            continue
        for strength in aug.strengths():
            treatments.append((aug.policy, default_strength(aug.policy) if strength is None else strength))
    models: list[tuple[str, int]] = []
    for i, model_spec in enumerate(spec.models()):
        for width in model_spec.widths():
            if width is None:
                if default_width is None:
                    raise spec_error("give the model's width", text=text, source=source, loc=("model", i))
                width = default_width(model_spec.name)
            models.append((model_spec.name, width))
    views = [(v.mode, r, v.first_clean) for v in spec.views for r in v.counts()]
    for model, width in models:
        for mode, r, first_clean in views:
            for invariance in spec.invariance:
                for size in sizes:
                    for seed in spec.seeds:
                        for policy, strength in treatments:
                            if policy == "none" and mode == "fixed":
                                continue
                            point = dict(data_size=size, seed=seed, augmentation=policy, strength=strength,
                                         model=model, width=width, views=mode, views_r=r,
                                         views_first_clean=first_clean, invariance=invariance)
                            if not any(e.matches(point) for e in spec.exclude):
                                yield point


def grid_size(spec: Spec) -> int:
    """Points in the spec's grid, without loading any data: fractions count as distinct sizes, and points
    that would resolve to one cell (a default strength also listed explicitly) count apart."""
    sizes = list(range(len(spec.data_sizes or spec.data_fractions or ())))
    return sum(1 for _ in grid_points(spec, sizes, default_strength=lambda policy: None,
                                      default_width=lambda model: 0))


def expand_cells(
    spec: Spec,
    *,
    pool_size: int,
    num_classes: int,
    dataset_fingerprint: str,
    default_strength: Callable[[str], float | None],
    default_width: Callable[[str], int] | None = None,
    source: str = "spec",
    text: str | None = None,
) -> list[Cell]:
    """Every cell of the grid, in a stable order, without duplicates.

    `default_width(model)` resolves a model given without a width (the model registry's default).
    """
    sizes = resolve_sizes(spec, pool_size=pool_size, num_classes=num_classes, source=source, text=text)
    cells: dict[str, Cell] = {}
    for point in grid_points(spec, sizes, default_strength=default_strength, default_width=default_width,
                             source=source, text=text):
        cell = cell_of(spec, dataset_fingerprint, point)
        cells.setdefault(cell.cell_key, cell)
    if not cells and spec.search is None:
        raise SpecError("the grid is empty", source=source)
    return list(cells.values())


def cell_of(spec: Spec, dataset_fingerprint: str, point: dict[str, Any]) -> Cell:
    """The cell at a grid point: the point's fields, the budget's and the optimiser's (a point may override
    the optimiser's: a search's learning rate)."""
    b, o = spec.budget, spec.optimizer
    fields = dict(
        dataset=spec.dataset.name, dataset_fingerprint=dataset_fingerprint,
        steps=b.steps, batch_size=b.batch_size, eval_every=b.eval_every or b.steps,
        lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
        weight_decay=o.weight_decay, warmup_steps=o.resolved_warmup(b.steps),
        subset=spec.dataset.subsets, accumulate=b.accumulate, normalize=spec.dataset.normalize,
    )
    return Cell(**(fields | dict(point)))  # type: ignore[arg-type]  # the point's fields are Cell's


def expand_studies(
    spec: Spec,
    *,
    pool_size: int,
    num_classes: int,
    dataset_fingerprint: str,
    default_strength: Callable[[str], float | None],
    default_width: Callable[[str], int] | None = None,
    source: str = "spec",
    text: str | None = None,
) -> list[Study]:
    """The studies of the spec's search block (none without one), in the grid's order."""
    if spec.search is None:
        return []
    sizes = resolve_sizes(spec, pool_size=pool_size, num_classes=num_classes, source=source, text=text)
    points = grid_points(spec, sizes, default_strength=default_strength, default_width=default_width,
                         source=source, text=text, searched=True)
    return group_studies(spec, points, lambda point: cell_of(spec, dataset_fingerprint, dict(point)))
