"""From a spec to the cells still to run: names checked against the registries, grid expanded, store consulted.

Everything here happens before anything is written, so bad input leaves the store untouched.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from augworth.results import Store
from augworth.search_spaces import Cell, Spec, SpecError, Study, expand_cells, expand_studies, parse_spec, spec_error


@dataclass(frozen=True)
class Plan:
    """What a run does: immutable (a changed plan is a new one: `dataclasses.replace`)."""

    spec: Spec
    text: str
    source: str
    cells: list[Cell]
    done: set[str]
    failed: set[str]
    pending: list[Cell]
    frozen: str  # "new": no sweep yet; "same": the frozen spec matches; "extend": a superset replaces it
    notes: list[str] = field(default_factory=list)
    studies: list[Study] = field(default_factory=list)  # the search block's (search.py); none without one
    frozen_text: str | None = None  # the frozen spec this plan was compared with (None: a new sweep)
    extend: bool = False
    retry_failed: bool = False

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
    from augworth.trainables.augmentations import AUGMENTATIONS, check_strength
    from augworth.trainables.datasets import DATASETS, EVAL_SETS
    from augworth.trainables.invariance import INVARIANCES
    from augworth.trainables.models import MODELS

    def check(registry, name: str, loc: tuple) -> None:
        if name not in registry:
            raise spec_error(f"unknown {registry.kind} {name!r} (valid: {', '.join(registry.names())})",
                             text=text, source=source, loc=loc)

    check(DATASETS, spec.dataset.name, ("dataset", "name"))
    for i, model in enumerate(spec.models()):
        check(MODELS, model.name, ("model", i, "name") if isinstance(spec.model, list) else ("model", "name"))
    for i, entry in enumerate(spec.eval_sets):
        name = entry if isinstance(entry, str) else entry.name
        check(EVAL_SETS, name, ("eval_sets", i) if isinstance(entry, str) else ("eval_sets", i, "name"))
    for i, name in enumerate(spec.invariance):
        check(INVARIANCES, name, ("invariance", i))
    for i, aug in enumerate(spec.augmentations):
        check(AUGMENTATIONS, aug.policy, ("augmentations", i, "policy"))
        for strength in aug.strengths():
            try:
                check_strength(aug.policy, strength)
            except ValueError as exc:
                raise spec_error(str(exc), text=text, source=source, loc=("augmentations", i, "strength")) from None
    check_searched_strength(spec, text, source)


def check_searched_strength(spec: Spec, text: str | None, source: str) -> None:
    """A searched strength must be one the searched policies take, at both ends of its range."""
    from augworth.trainables.augmentations import check_strength

    bounds = spec.search.params.get("strength") if spec.search is not None else None
    if bounds is None:
        return
    from augworth.search_spaces import searched_policies

    for policy in searched_policies(spec):
        for end in ("low", "high"):
            try:
                check_strength(policy, float(getattr(bounds, end)))
            except ValueError as exc:
                raise spec_error(f"searched {exc}", text=text, source=source,
                                 loc=("search", "params", "strength", end)) from None


def load_data(spec: Spec, text: str | None, source: str):  # -> trainables.datasets.DataSet
    """The spec's data set and every eval set, loaded as a worker will: a missing file is bad input, here."""
    from augworth.trainables.datasets import eval_request, eval_set, load_dataset

    try:
        data = load_dataset(spec.dataset.name, spec.dataset.root, options=dict(spec.dataset.options),
                            download=spec.dataset.download)
    except (OSError, ValueError, TypeError) as exc:
        loc: tuple[str | int, ...] = ("dataset", "root") if spec.dataset.root else ("dataset", "name")
        if isinstance(exc, TypeError | ValueError) and spec.dataset.options and "option" in str(exc):
            loc = ("dataset", "options")
        raise spec_error(f"cannot load data set: {exc}", text=text, source=source, loc=loc) from None
    for i, entry in enumerate(spec.eval_requests()):
        label, name, root, options = eval_request(entry)
        try:
            eval_set(data, name, root, options)
        except (OSError, ValueError, TypeError) as exc:
            loc = ("eval_sets", i) if isinstance(spec.eval_sets[i], str) else ("eval_sets", i, "name")
            raise spec_error(f"cannot build eval set {label!r}: {exc}", text=text, source=source, loc=loc) from None
    return data


def expand(spec: Spec, text: str | None, source: str) -> list[Cell]:
    """The grid's cells."""
    return expand_cells(spec, **_expansion(spec, text, source))


def expand_searched(spec: Spec, text: str | None, source: str) -> list[Study]:
    """The search block's studies."""
    return expand_studies(spec, **_expansion(spec, text, source))


def _expansion(spec: Spec, text: str | None, source: str) -> dict[str, Any]:
    """What expanding the grid needs from the data set and the registries."""
    from augworth.trainables.augmentations import default_strength
    from augworth.trainables.models import default_width

    data = load_data(spec, text, source)
    return dict(pool_size=data.pool_size, num_classes=data.num_classes, dataset_fingerprint=data.fingerprint,
                default_strength=lambda policy: default_strength(policy, data.image_size),
                default_width=default_width, source=source, text=text)


def plan_sweep(text: str, source: str, store: Store, *, extend: bool = False, retry_failed: bool = False) -> Plan:
    spec = parse_spec(text, source)
    check_names(spec, text, source)
    from .storage import check_storage

    check_storage(spec, store, text, source)
    cells = expand(spec, text, source)
    if spec.design is not None:
        from .designs import check_design_grid

        check_design_grid(spec, cells, source)
    keys = {c.cell_key for c in cells}
    frozen, frozen_text = "new", store.read_spec(spec.name) if store.has_sweep(spec.name) else None
    if frozen_text is not None:
        old = parse_spec(frozen_text, store.spec_source(spec.name))
        check_storage_kept(old, spec, text, source)
        if old.grid_fields() == spec.grid_fields():
            frozen = "same" if old.design == spec.design else "design"  # a new budget or target: the spec again
        elif not extend:
            only_eval_sets = ({k: v for k, v in old.grid_fields().items() if k != "eval_sets"}
                              == {k: v for k, v in spec.grid_fields().items() if k != "eval_sets"})
            raise SpecError(
                f"sweep {spec.name!r} already exists in {store.shown} with a different spec "
                + ("(only its eval sets differ: `augworth evaluate` may have added some; list them in your spec, "
                   f"or run `augworth resume {spec.name}`)" if only_eval_sets else
                   "(use --extend for a superset of its grid, or another name)"), source=source)
        else:
            old_keys = {c.cell_key for c in expand(old, None, source)}
            missing = old_keys - keys
            if missing:
                raise SpecError(f"--extend needs a superset of the existing grid; {len(missing)} of its cells "
                                f"are not in the new one", source=source)
            check_search_extension(old, spec, source)
            frozen = "extend"
    if frozen_text is not None:
        check_eval_sets(spec, old, store, text, source, extend=frozen == "extend")
    done = store.done_keys(spec.name) & keys
    failed = set(store.failures(spec.name)) & keys - done
    skip = done if retry_failed else done | failed
    pending = [c for c in cells if c.cell_key not in skip]
    return Plan(spec, text, source, cells, done, failed, pending, frozen, notes=redundant_treatments(cells),
                studies=expand_searched(spec, text, source), frozen_text=frozen_text, extend=extend,
                retry_failed=retry_failed)


def plan_again_if_frozen_changed(plan: Plan, store: Store) -> Plan:
    """Under the sweep's lock: `plan` as it is where the sweep's frozen spec is still the one it was compared with;
    else made again against what is frozen now (another driver froze, extended or added eval sets to the sweep
    between this plan and this lock). A resume (its spec was the frozen one) takes the new frozen spec."""
    now = store.read_spec(plan.spec.name) if store.has_sweep(plan.spec.name) else None
    if now == plan.frozen_text:
        return plan
    resumed = plan.frozen_text is not None and plan.text == plan.frozen_text and now is not None
    return plan_sweep(now if resumed and now is not None else plan.text, store.spec_source(plan.spec.name) if resumed
                      else plan.source, store, extend=plan.extend, retry_failed=plan.retry_failed)


def redundant_treatments(cells: list[Cell]) -> list[str]:
    """Treatments an invariance wrapper makes redundant (its registry's `makes_redundant`) where the grid also
    holds `none` with that wrapper: they train like it, yet the analysis would report them as a treatment."""
    from augworth.trainables.invariance import INVARIANCES

    counts = Counter((c.augmentation, c.invariance) for c in cells)
    return [f"{n} cells of {aug} with invariance {inv} train like none with {inv} ({inv} makes {aug} redundant); "
            f"leave them out with `exclude: [{{augmentation: {aug}, invariance: {inv}}}]`"
            for (aug, inv), n in sorted(counts.items())
            if aug in INVARIANCES.get(inv).meta.get("makes_redundant", ()) and ("none", inv) in counts]


def check_storage_kept(old: Spec, new: Spec, text: str, source: str) -> None:
    """A sweep's studies live in its frozen `search.storage`: a spec that names another is refused, whatever else
    it changes (a search opened there would start every study from zero while `status` and `best` read the old)."""
    before, after = (s.search.storage if s.search is not None else None for s in (old, new))
    if old.search is not None and new.search is not None and before != after:
        from augworth.search_spaces.secrets import redact

        raise spec_error(f"is {redact(str(after))} here and {redact(str(before))} in the sweep's frozen spec, where "
                         "its studies live; keep that one (to move the studies, copy them and edit the frozen "
                         "spec.yaml)", text=text, source=source, loc=("search", "storage"))


def check_search_extension(old: Spec, new: Spec, source: str) -> None:
    """--extend on a sweep with a search may raise `search.trials` and nothing else: another axis would rename
    or reshape its studies (their names and cells come from the grid's other axes and the seeds)."""
    if old.search is None:
        return
    before, after = old.grid_fields(), new.grid_fields()
    rest = ({k: v for k, v in before.items() if k != "search"}, {k: v for k, v in after.items() if k != "search"})
    if new.search is None or rest[0] != rest[1] or {k: v for k, v in before["search"].items() if k != "trials"} != {
            k: v for k, v in after["search"].items() if k != "trials"} or after["search"]["trials"] < before[
            "search"]["trials"]:
        raise SpecError("--extend on a sweep with a search may only raise search.trials (only trials may grow)",
                        source=source)


def check_eval_sets(spec: Spec, frozen: Spec, store: Store, text: str, source: str, *, extend: bool) -> None:
    """One label, one test set: refuse (bad input) a label whose name or options differ from the frozen spec's,
    or whose content differs from what the stored rows of that label were measured on (`eval_set_fingerprint`:
    other files under the same root, or another root); and, under --extend, eval sets added to a sweep that
    has finished cells, whose rows would never have them."""
    from augworth.results import connect
    from augworth.trainables.datasets import eval_request, eval_set_fingerprint, load_dataset

    before, now = frozen.eval_set_meanings(), spec.eval_set_meanings()
    data = load_dataset(spec.dataset.name, spec.dataset.root, options=dict(spec.dataset.options),
                        download=spec.dataset.download)  # loaded by the plan already: cached
    stored: dict[str, set[str]] = {}
    finished = bool(store.done_keys(spec.name))  # each call reads every cell file's footer: once
    if finished:
        for label, fingerprint in connect(store, spec.name).execute(
                "SELECT DISTINCT eval_set, eval_set_fingerprint FROM results "
                "WHERE eval_set_fingerprint IS NOT NULL").fetchall():
            stored.setdefault(label, set()).add(fingerprint)
    for i, request in enumerate(spec.eval_requests()):
        label, name, root, options = eval_request(request)
        loc = ("eval_sets", i)
        if label in before and before[label] != now[label]:
            raise spec_error(f"eval set {label!r} is {' '.join(before[label])} in the sweep's frozen spec and "
                             f"{' '.join(now[label])} here: one label, two test sets; give it a new label",
                             text=text, source=source, loc=loc)
        fingerprint = eval_set_fingerprint(data, name, root, options)
        if stored.get(label, {fingerprint}) != {fingerprint}:
            raise spec_error(f"eval set {label!r} is not the set its stored rows were measured on (content "
                             f"{fingerprint}, rows {', '.join(sorted(stored[label]))}): its files changed; give it "
                             "a new label", text=text, source=source, loc=loc)
    added = [e["label"] for e in spec.eval_requests() if e["label"] not in before]
    if extend and added and finished:
        raise SpecError(f"--extend cannot add eval sets ({', '.join(added)}) to a sweep with finished cells: their "
                        f"rows would never have them. `augworth evaluate {spec.name} --eval-set ...` adds them to "
                        "finished cells from their kept weights (cells trained with execution.keep_weights: true)",
                        source=source)


def plan_resume(store: Store, sweep: str, *, retry_failed: bool = False) -> Plan:
    return plan_sweep(store.read_spec(sweep), store.spec_source(sweep), store, retry_failed=retry_failed)
