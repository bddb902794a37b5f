"""From a spec to the cells still to run: names checked against the registries, grid expanded, store consulted.

Everything here happens before anything is written, so bad input leaves the store untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from search_spaces import Cell, Spec, SpecError, expand_cells, parse_spec, spec_error

from .store import Store


@dataclass
class Plan:
    spec: Spec
    text: str
    source: str
    cells: list[Cell]
    done: set[str]
    failed: set[str]
    pending: list[Cell]
    frozen: str  # "new": no sweep yet; "same": the frozen spec matches; "extend": a superset replaces it
    notes: list[str] = field(default_factory=list)

    @property
    def keys(self) -> set[str]:
        return {c.cell_key for c in self.cells}


def import_plugins(spec: Spec, text: str | None, source: str) -> None:
    """The spec's plugins register their components when imported (timm style: one decorated function)."""
    import importlib

    for i, module in enumerate(spec.execution.plugins):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise spec_error(f"cannot import plugin {module!r}: {exc}", text=text, source=source,
                             loc=("execution", "plugins", i)) from None


def check_names(spec: Spec, text: str | None, source: str) -> None:
    """Every name in the spec must be in its registry, and every strength in its policy's range."""
    import_plugins(spec, text, source)
    from trainables.augmentations import AUGMENTATIONS, check_strength
    from trainables.datasets import DATASETS, EVAL_SETS
    from trainables.models import MODELS

    def check(registry, name: str, loc: tuple) -> None:
        if name not in registry:
            raise spec_error(f"unknown {registry.kind} {name!r} (valid: {', '.join(registry.names())})",
                             text=text, source=source, loc=loc)

    check(DATASETS, spec.dataset.name, ("dataset", "name"))
    check(MODELS, spec.model.name, ("model", "name"))
    for i, name in enumerate(spec.eval_sets):
        check(EVAL_SETS, name, ("eval_sets", i))
    for i, aug in enumerate(spec.augmentations):
        check(AUGMENTATIONS, aug.policy, ("augmentations", i, "policy"))
        for strength in aug.strengths():
            try:
                check_strength(aug.policy, strength)
            except ValueError as exc:
                raise spec_error(str(exc), text=text, source=source, loc=("augmentations", i, "strength")) from None


def expand(spec: Spec, text: str | None, source: str) -> list[Cell]:
    from trainables.augmentations import default_strength
    from trainables.datasets import load_dataset

    try:
        data = load_dataset(spec.dataset.name, spec.dataset.root)
    except (OSError, ValueError) as exc:
        raise spec_error(f"cannot load data set: {exc}", text=text, source=source,
                         loc=("dataset", "root") if spec.dataset.root else ("dataset", "name")) from None
    return expand_cells(
        spec, pool_size=data.pool_size, num_classes=data.num_classes, dataset_fingerprint=data.fingerprint,
        default_strength=lambda policy: default_strength(policy, data.image_size), source=source, text=text,
    )


def plan_sweep(text: str, source: str, store: Store, *, extend: bool = False, retry_failed: bool = False) -> Plan:
    spec = parse_spec(text, source)
    check_names(spec, text, source)
    cells = expand(spec, text, source)
    keys = {c.cell_key for c in cells}
    frozen = "new"
    if store.has_sweep(spec.name):
        old = parse_spec(store.read_spec(spec.name), f"{store.uri}/{spec.name}/spec.yaml")
        if old.grid_fields() == spec.grid_fields():
            frozen = "same"
        elif not extend:
            raise SpecError(
                f"sweep {spec.name!r} already exists in {store.uri} with a different spec "
                "(use --extend for a superset of its grid, or another name)", source=source)
        else:
            old_keys = {c.cell_key for c in expand(old, None, source)}
            missing = old_keys - keys
            if missing:
                raise SpecError(f"--extend needs a superset of the existing grid; {len(missing)} of its cells "
                                f"are not in the new one", source=source)
            frozen = "extend"
    done = store.done_keys(spec.name) & keys
    failed = set(store.failures(spec.name)) & keys - done
    skip = done if retry_failed else done | failed
    pending = [c for c in cells if c.cell_key not in skip]
    return Plan(spec, text, source, cells, done, failed, pending, frozen)


def plan_resume(store: Store, sweep: str, *, retry_failed: bool = False) -> Plan:
    return plan_sweep(store.read_spec(sweep), f"{store.uri}/{sweep}/spec.yaml", store, retry_failed=retry_failed)
