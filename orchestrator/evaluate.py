"""`augworth evaluate`: finished cells evaluated on eval sets they were not trained with, from their kept weights
(`execution.keep_weights`), without training them again.

Under the sweep's lock: the new eval sets join the frozen spec first (so cells still to train get them too,
and a second run of the same command goes on where the first stopped); then, in batches, each done cell that
lacks a row for one of them gets its final-step rows added, its rows rewritten atomically (`Store.write_cells`):
each row appears exactly once, whether the cell sat in its own file or in a compacted one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from augworth.results import Store, StoreError, cell_rows, connect, rows_to_table
from augworth.search_spaces import PROBE_COLUMNS, Cell, SpecError, cell_key, parse_spec
from augworth.search_spaces.yaml_strict import dump_yaml

from .lock import SweepLock
from .plan import check_eval_sets, check_names, load_data

BATCH_CELLS = 64  # cells evaluated between two writes: a compacted file holding them is rewritten once per batch


@dataclass(frozen=True)
class EvaluateReport:
    sweep: str
    eval_sets: list[str]  # the labels asked for
    evaluated: int  # cells given new rows now
    had_them: int  # done cells that had rows for every label asked for already
    rows_added: int
    no_weights: list[str]  # done cells that lack rows but have no kept weights (trained without keep_weights)
    bad_weights: dict[str, str]  # cell -> why its kept weights could not be used (another cell's, unreadable)
    seconds: float


def parse_eval_set(value: str) -> str | dict[str, Any]:
    """One `--eval-set`: a registered eval set's name, or a YAML mapping as in a spec's `eval_sets`, e.g.
    `{label: c10c_s5, name: cifar10c, root: /data/CIFAR-10-C, options: {severity: 5}}`."""
    from augworth.search_spaces.yaml_strict import YamlError, load_yaml

    if not value.lstrip().startswith("{"):
        return value.strip()
    try:  # the spec's YAML reader: `5e-4` is the number it is in a spec file, not a string
        entry = load_yaml(value)
    except YamlError as exc:
        raise SpecError(f"--eval-set {value!r}: not a YAML mapping ({str(exc).splitlines()[0]})") from None
    if not isinstance(entry, dict):
        raise SpecError(f"--eval-set {value!r}: not a YAML mapping")
    return entry


def evaluate_sweep(store: Store, sweep: str, requests: Sequence[str | dict[str, Any]], *, device: str = "cpu",
                   log: Callable[[str], Any] = lambda line: None) -> EvaluateReport:
    """Add rows for `requests` (eval sets, as `parse_eval_set` gives them) to every done cell of `sweep` that has
    kept weights. Bad input (an unknown set, a label that means another set in this sweep, no kept weights
    at all) raises SpecError or StoreError before anything is written."""
    from augworth.trainables.weights import kept_keys

    t0 = time.perf_counter()
    frozen_text = store.read_spec(sweep)
    frozen, spec, text, data, wanted = _checked(store, sweep, frozen_text, requests)
    folder = store.location(sweep, "weights")
    done, todo = _missing_rows(store, sweep, wanted)
    kept = kept_keys(folder)
    if todo and not kept & todo.keys():  # refused before the lock: bad input writes nothing, not even a lock file
        raise StoreError(f"no kept weights for the {len(todo)} done cells of sweep {sweep!r} that lack "
                         f"{', '.join(wanted)} (in {folder}): only cells trained with execution.keep_weights: "
                         "true can be evaluated; train the others again, or run the eval sets as a new sweep")
    with SweepLock(store, sweep):
        if store.read_spec(sweep) != frozen_text:  # a driver froze another spec since: check against that one
            frozen_text = store.read_spec(sweep)
            frozen, spec, text, data, wanted = _checked(store, sweep, frozen_text, requests)
        done, todo = _missing_rows(store, sweep, wanted)  # a driver may have finished more cells meanwhile
        grid = store.read_grid(sweep)
        cells = {row["cell_key"]: Cell.from_dict(row) for row in (grid.to_pylist() if grid is not None else [])}
        kept = kept_keys(folder)
        no_weights = sorted(key for key in todo if key not in kept)
        if spec.eval_requests() != frozen.eval_requests():
            store.write_spec(sweep, text)  # cells still to train get the new sets; a re-run goes on from here
        runnable = [key for key in todo if key not in no_weights]
        rows_added, bad = 0, dict[str, str]()
        for start in range(0, len(runnable), BATCH_CELLS):
            batch = runnable[start:start + BATCH_CELLS]
            rows_added += _evaluate_batch(store, sweep, {key: todo[key] for key in batch}, cells, data, folder,
                                          device, bad)
            log(f"evaluated {min(start + BATCH_CELLS, len(runnable))}/{len(runnable)} cells")
    return EvaluateReport(sweep, list(wanted), len(runnable) - len(bad), len(done) - len(todo), rows_added,
                          no_weights, bad, time.perf_counter() - t0)


def _checked(store: Store, sweep: str, frozen_text: str, requests: Sequence[str | dict[str, Any]]):
    """(frozen spec, spec with the requests, its text, data set, the requests by label), checked as any spec is:
    names, every eval set built (a missing file is bad input, here), one meaning per label."""
    source = store.spec_source(sweep)
    frozen = parse_spec(frozen_text, source)
    spec = _with_eval_sets(frozen, requests, source)
    text = spec.to_yaml()
    check_names(spec, text, "--eval-set")
    data = load_data(spec, text, "--eval-set")
    check_eval_sets(spec, frozen, store, text, "--eval-set", extend=False)
    by_label = {r["label"]: r for r in spec.eval_requests()}
    wanted = {label: by_label[label] for label in dict.fromkeys(_label(q) for q in requests)}
    return frozen, spec, text, data, wanted


def _missing_rows(store: Store, sweep: str, wanted: dict[str, dict[str, Any]]
                  ) -> tuple[set[str], dict[str, list[dict[str, Any]]]]:
    """The done cells, and for each that lacks a final row for some of `wanted`, those eval sets' requests."""
    done = store.done_keys(sweep)
    have: dict[str, set[str]] = {key: set() for key in done}
    for key, label in connect(store, sweep).execute(
            "SELECT DISTINCT cell_key, eval_set FROM results WHERE final").fetchall():
        have.setdefault(key, set()).add(label)
    todo = {key: [wanted[label] for label in wanted if label not in have[key]] for key in sorted(done)}
    return done, {key: requests for key, requests in todo.items() if requests}


def _label(request: str | dict[str, Any]) -> str:
    return request if isinstance(request, str) else str(request.get("label") or request.get("name"))


def _with_eval_sets(frozen, requests: Sequence[str | dict[str, Any]], source: str):  # -> Spec
    """The frozen spec with the requested eval sets added (a label it has already stays as it is, and is
    checked against the request by `check_eval_sets`), validated like any spec."""
    import copy

    entries = copy.deepcopy(frozen.model_dump(mode="json", exclude_none=True)["eval_sets"])
    labels = {r["label"]: i for i, r in enumerate(frozen.eval_requests())}
    for request in requests:
        label = _label(request)
        if label in labels:
            entries[labels[label]] = request  # the same meaning, or check_eval_sets refuses it
        else:
            labels[label] = len(entries)
            entries.append(request)
    data = frozen.model_dump(mode="json", exclude_none=True) | {"eval_sets": entries}
    return parse_spec(dump_yaml(data), f"{source} with --eval-set")


def _evaluate_batch(store: Store, sweep: str, todo: dict[str, list[dict[str, Any]]], cells: dict[str, Cell],
                    data, folder: str, device: str, bad: dict[str, str]) -> int:
    """Evaluate a batch of cells and write each one's old rows plus the new ones; returns the rows added. A cell
    whose kept weights cannot be used goes to `bad` (why), and keeps its rows as they are."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from augworth.trainables.weights import evaluate_weights, load_weights

    old = store.read_cells(sweep, list(todo))
    tables = {}
    added = 0
    for key, requests in todo.items():
        rows = old.filter(pc.equal(old["cell_key"], key))
        template = next((r for r in rows.to_pylist() if r["final"]), None)  # training time, probes, provenance
        if template is None:
            bad[key] = "no final row to take the training time and provenance from"
            continue
        # a grid cell from the grid; a search's cell (never in the grid) from its own rows' config
        cell = cells.get(key) or Cell.from_dict(json.loads(template["config_json"]) if template.get("config_json")
                                                else template)
        if cell_key(cell) != key:
            bad[key] = "its rows' config is another cell's"
            continue
        try:  # a weights file that is missing, unreadable, another cell's or another model's: that cell's fault
            measured = evaluate_weights(cell, data, load_weights(folder, key), requests, device=device)
        except (OSError, ValueError, KeyError) as exc:  # run-time errors (CUDA, memory) stop the command instead
            bad[key] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
            continue
        kept = {name: template[name] for name in ("step", "final", "train_seconds", *PROBE_COLUMNS)}
        new = cell_rows(cell, [kept | m for m in measured], param_count=template["param_count"],
                        device=template["device"], torch_version=template["torch_version"],
                        code_revision=template["code_revision"])
        tables[key] = pa.concat_tables([rows, rows_to_table(new, sweep=sweep, key=key).cast(rows.schema)])
        added += len(new)
    if tables:
        store.write_cells(sweep, tables)
    return added
