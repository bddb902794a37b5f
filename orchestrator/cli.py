"""The `augworth` command line (typer). Heavy imports (Ray, torch, analysis) happen inside the commands
that need them: `augworth query` starts neither Ray nor torch.

Exit codes: 0 ok, 2 bad input, 3 the sweep finished with failed cells, 1 a bug of ours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Column, Table

from results import Store, StoreError, connect, read_results
from results import compact as compact_sweep
from results import quarantine as quarantine_files
from results import verify as verify_sweep
from search_spaces import SpecError, preset_names, preset_path, read_spec_text

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Measure what data augmentations are worth: sweeps on Ray Tune, results in Parquet.")
# A pipe or a file gets COLUMNS or this width, not the 80 columns rich would fall back on: tables there are read
# by scripts and copied from, so no name may be cut to fit.
PIPE_WIDTH = 200


def _stdout_console() -> Console:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


out = _stdout_console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

StoreOpt = Annotated[str, typer.Option("--store", help="Results store root: a path or a pyarrow filesystem URI.")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="Ray cluster to connect to (else RAY_ADDRESS, "
                                                "else a private local Ray).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
RetryFailedOpt = Annotated[bool, typer.Option("--retry-failed", help="Run failed cells again.")]
NoProgressOpt = Annotated[bool, typer.Option("--no-progress", help="No live display: one log line per cell event.")]
DEFAULT_STORE = "./augworth-store"


class BadInput(Exception):
    """Anything the user can fix: printed as one line, exit code 2."""


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]augworth:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def user_errors(fn: F) -> F:
    """Bad input of any kind -> one line on stderr and exit code 2; nothing else is caught."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (SpecError, StoreError, BadInput) as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def open_store(root: str) -> Store:
    try:
        return Store(root)
    except (OSError, ValueError) as exc:  # pyarrow: unknown scheme, bad URI
        raise BadInput(f"--store {root!r}: {exc}") from None


def open_sweep(root: str, sweep: str) -> Store:
    store = open_store(root)
    if not store.has_sweep(sweep):
        raise BadInput(f"no sweep {sweep!r} in store {root!r} (sweeps there: {', '.join(store.sweeps()) or 'none'})")
    return store


# ----- run ------------------------------------------------------------------------------------------

def _run(text: str, source: str, store_root: str, *, address: str | None, dry_run: bool, extend: bool,
         retry_failed: bool, progress: bool) -> int:
    from .plan import plan_sweep

    store = open_store(store_root)
    plan = plan_sweep(text, source, store, extend=extend, retry_failed=retry_failed)
    sweep = plan.spec.name
    for note in plan.notes:
        err.print(f"warning: {note}", highlight=False, soft_wrap=True)
    if dry_run:
        from .estimate import estimate_cpu_seconds

        seconds = estimate_cpu_seconds(plan, store)
        out.print(f"sweep {sweep}: {len(plan.cells)} cells, {len(plan.done)} done, {len(plan.failed)} failed, "
                  f"{len(plan.pending)} to run; estimated {seconds:,.0f} CPU-seconds "
                  f"(~{seconds / 3600:.2f} CPU-hours) for those", highlight=False)
        return 0
    from .runner import run_plan

    summary = run_plan(plan, store, address=address, show_progress=progress, log_cells=not progress)
    out.print(f"sweep {sweep}: {summary.done} cells done now, {summary.skipped} were already done, "
              f"{summary.failed} failed now ({summary.failed_total} failure records in the sweep)", highlight=False)
    if summary.unfinished:
        out.print(f"{summary.unfinished} cells did not finish (interrupted, or their trials were lost): "
                  f"`augworth resume {sweep}` runs them", highlight=False)
    out.print(f"store: {store.sweep_dir(sweep)}/results", highlight=False)
    return summary.exit_code


def spec_source(spec: Path, smoke: bool = False) -> tuple[str, str]:
    """(text, source) of SPEC: a YAML file, or the name of a preset; `smoke`: its scaled-down version."""
    if not spec.exists() and str(spec) in preset_names():
        spec = preset_path(str(spec))
    text = read_spec_text(spec)
    if not smoke:
        return text, str(spec)
    from search_spaces import apply_smoke, parse_spec

    return apply_smoke(parse_spec(text, str(spec)), str(spec)).to_yaml(), f"{spec} (smoke)"


SmokeOpt = Annotated[bool, typer.Option("--smoke", help="Run the spec's `smoke:` scale-down (seconds, on CPU).")]


@app.command()
@user_errors
def run(
    spec: Annotated[Path, typer.Argument(help="The sweep spec (YAML), or a preset's name.")],
    store: StoreOpt = DEFAULT_STORE,
    address: AddressOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print cell counts and an estimate; run nothing.")] = False,
    extend: Annotated[bool, typer.Option("--extend", help="Allow a superset of the frozen grid.")] = False,
    retry_failed: RetryFailedOpt = False,
    no_progress: NoProgressOpt = False,
    smoke: SmokeOpt = False,
) -> None:
    """Run a sweep: every cell of SPEC not yet done in the store."""
    text, source = spec_source(spec, smoke)
    code = _run(text, source, store, address=address, dry_run=dry_run, extend=extend,
                retry_failed=retry_failed, progress=not no_progress)
    raise typer.Exit(code)


@app.command()
@user_errors
def submit(
    spec: Annotated[Path, typer.Argument(help="The sweep spec (YAML), or a preset's name.")],
    address: Annotated[str, typer.Option("--address", help="The cluster's job server, e.g. http://HEAD:8265.")],
    store: Annotated[str, typer.Option("--store", help="Absolute path or URI that the head node reaches.")],
    extend: Annotated[bool, typer.Option("--extend")] = False,
    retry_failed: RetryFailedOpt = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job's logs until it ends.")] = False,
    smoke: SmokeOpt = False,
) -> None:
    """Submit a sweep to a Ray cluster as a Ray Job and print the job id."""
    import asyncio

    from search_spaces import parse_spec

    from .plan import check_names
    from .submit import check_store_root, follow, submit_sweep

    check_store_root(store)
    text, source = spec_source(spec, smoke)
    parsed = parse_spec(text, source)
    check_names(parsed, text, source)
    job_id, client = submit_sweep(parsed, text, address=address, store=store, extend=extend,
                                  retry_failed=retry_failed)
    out.print(f"submitted sweep {parsed.name} as job {job_id}", highlight=False)
    if wait:
        status = asyncio.run(follow(client, job_id))
        out.print(f"job {job_id}: {status}", highlight=False)
        raise typer.Exit(0 if status.endswith("SUCCEEDED") else 3)


@app.command()
@user_errors
def resume(
    sweep: Annotated[str, typer.Argument(help="Sweep name.")],
    store: StoreOpt = DEFAULT_STORE,
    address: AddressOpt = None,
    retry_failed: RetryFailedOpt = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Run the cells of a sweep that are not done yet, from its frozen spec in the store."""
    opened = open_sweep(store, sweep)
    text = opened.read_spec(sweep)
    code = _run(text, f"{opened.sweep_dir(sweep)}/spec.yaml", store, address=address, dry_run=False, extend=False,
                retry_failed=retry_failed, progress=not no_progress)
    raise typer.Exit(code)


@app.command()
@user_errors
def demo(
    store: StoreOpt = DEFAULT_STORE,
    address: AddressOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where the pictures go.")] = None,
    no_progress: NoProgressOpt = False,
) -> None:
    """Run the digits demo locally, then print the exchange rates and draw the curves."""
    path = preset_path("digits_demo")
    code = _run(path.read_text(), str(path), store, address=address, dry_run=False, extend=False,
                retry_failed=False, progress=not no_progress)
    _analyze("digits-demo", store, eval_set=None, as_json=False, out_dir=out_dir, reference="none")
    raise typer.Exit(code)


@app.command()
@user_errors
def presets(
    name: Annotated[str | None, typer.Argument(help="Print this preset's YAML (to copy and edit).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The list as JSON.")] = False,
) -> None:
    """List the preset specs shipped with augworth, with cell counts and estimated GPU-hours."""
    from search_spaces import grid_size, load_spec

    from .estimate import estimate_gpu_hours

    if name is not None:
        sys.stdout.write(preset_path(name).read_text())
        return
    rows = []
    for preset in preset_names():
        spec = load_spec(preset_path(preset))
        rows.append({"preset": preset, "sweep": spec.name, "cells": grid_size(spec),
                     "gpu_hours": round(estimate_gpu_hours(spec), 1), "smoke": spec.smoke is not None,
                     "description": (spec.description or "").strip()})
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
        return
    table = Table("preset", "cells", "GPU-hours (est.)", "--smoke", Column("description", overflow="fold"))
    for r in rows:
        table.add_row(r["preset"], f"{r['cells']:,}", f"{r['gpu_hours']:,.1f}", "yes" if r["smoke"] else "",
                      r["description"])
    from analysis.tables import whole

    show(whole(table, "preset"))
    out.print("GPU-hours: training images / an assumed throughput per model (orchestrator/estimate.py), not a "
              "measurement. `augworth presets NAME` prints one; `augworth run NAME --smoke` runs its "
              "scale-down.", highlight=False)


# ----- tables ---------------------------------------------------------------------------------------

def show(table: Table) -> None:
    """Print a table; where stdout is not a terminal, widen the page rather than cut a word or a `whole` column."""
    if not out.is_terminal:  # the narrowest the table gets without cutting, measured on an unbounded page
        out.width = max(out.width, Measurement.get(out, out.options.update_width(UNBOUNDED), table).minimum)
    out.print(table)


UNBOUNDED = 100_000


# ----- query and analyze ----------------------------------------------------------------------------

@app.command()
@user_errors
def query(
    sweep: Annotated[str, typer.Argument(help="Sweep name.")],
    sql: Annotated[str, typer.Argument(help='SQL over the view `results`, e.g. "SELECT count(*) FROM results".')],
    store: StoreOpt = DEFAULT_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Run SQL (DuckDB) over a sweep's results, exposed as the view `results`."""
    import duckdb

    con = connect(open_sweep(store, sweep), sweep)
    try:
        df = con.execute(sql).df()
    except duckdb.Error as exc:
        raise BadInput(f"query failed: {str(exc).splitlines()[0]}") from None
    if as_json:
        sys.stdout.write(df.to_json(orient="records", date_format="iso") + "\n")
        return
    from analysis.tables import frame_table

    show(frame_table(df))


def _analyze(sweep: str, store_root: str, *, eval_set: str | None, as_json: bool, out_dir: Path | None,
             reference: str) -> None:
    from analysis import exchange_rates, plot_effective_samples, plot_scaling_curves
    from analysis.tables import probe_table, summary_table

    store = open_sweep(store_root, sweep)
    results = read_results(store, sweep, final_only=True)  # fits and pictures use the last evaluation only
    if results.empty:
        raise BadInput(f"sweep {sweep!r} has no finished cells yet")
    sets = sorted(results["eval_set"].unique(), key=lambda name: (name != "test", name))  # in-distribution first
    if eval_set is not None:
        if eval_set not in sets:
            raise BadInput(f"--eval-set {eval_set!r} is not in the results (have: {', '.join(sets)})")
        results, sets = results[results["eval_set"] == eval_set], [eval_set]
    if reference not in set(results["augmentation"]):
        raise BadInput(f"--reference {reference!r} has no results in sweep {sweep!r}")
    rates = exchange_rates(results, reference=reference)
    if as_json:
        sys.stdout.write(rates.to_json(orient="records") + "\n")
        return
    if out_dir is None:
        out_dir = Path(store.sweep_dir(sweep)) / "figures" if store.local else Path("augworth-figures") / sweep
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in sets:
        table = summary_table(rates[rates["eval_set"] == name])
        table.title = f"exchange rates on '{name}': v = f_ref⁻¹(f_aug(x)) − x"
        show(table)
        a = plot_scaling_curves(results, rates, out_dir / f"scaling_{name}.png", eval_set=name)
        b = plot_effective_samples(rates, out_dir / f"effective_samples_{name}.png", eval_set=name)
        out.print(f"pictures: {a}\n          {b}", highlight=False)
    probed = connect(store, sweep).execute(
        "SELECT * FROM results WHERE grad_noise IS NOT NULL OR flatness IS NOT NULL OR hessian_top_eig IS NOT NULL"
    ).df()
    if not probed.empty:
        show(probe_table(probed))
    out.print(f"store: {store.sweep_dir(sweep)}/results", highlight=False)


@app.command()
@user_errors
def analyze(
    sweep: Annotated[str, typer.Argument(help="Sweep name.")],
    store: StoreOpt = DEFAULT_STORE,
    eval_set: Annotated[str | None, typer.Option("--eval-set", help="Only this eval set.")] = None,
    as_json: JsonOpt = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where the pictures go.")] = None,
    reference: Annotated[str, typer.Option("--reference", help="The reference treatment.")] = "none",
) -> None:
    """Fit power laws and print exchange rates (Eq. 1 of Geiping et al.); draw the curves."""
    _analyze(sweep, store, eval_set=eval_set, as_json=as_json, out_dir=out_dir, reference=reference)


@app.command()
@user_errors
def status(
    sweep: Annotated[str, typer.Argument(help="Sweep name.")],
    store: StoreOpt = DEFAULT_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Done / failed / running / missing cells, per treatment and per size, from the store alone."""
    from .status import STATES, sweep_status

    st = sweep_status(open_sweep(store, sweep), sweep)
    if as_json:
        sys.stdout.write(json.dumps(dataclasses.asdict(st), default=str) + "\n")
        return
    t = st.totals
    driver = (f"driver: pid {st.driver.get('pid')} on {st.driver.get('host')} since {st.driver.get('since')}"
              if st.driver else "no driver running")
    out.print(f"sweep {sweep}: {t['cells']} cells: {t['done']} done, {t['failed']} failed, {t['running']} running, "
              f"{t['missing']} missing; {driver}", highlight=False)
    for note in st.notes:
        out.print(note, highlight=False)
    from analysis.tables import status_tables

    for table in status_tables(st, STATES):
        show(table)


@app.command()
@user_errors
def verify(
    sweep: Annotated[str, typer.Argument(help="Sweep name.")],
    store: StoreOpt = DEFAULT_STORE,
    quarantine: Annotated[bool, typer.Option("--quarantine", help="Move bad files to <sweep>/quarantine/.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check every result file (readable, schema, cell key matches name and content). Exit 3 if any is bad."""
    from .lock import SweepLock

    opened = open_sweep(store, sweep)
    with SweepLock(opened, sweep) if quarantine else contextlib.nullcontext():  # moving files: no driver runs
        state = opened.results_state(sweep)
        checked = len(state.files()) + len(state.misnamed)
        bad = verify_sweep(opened, sweep)
        moved = quarantine_files(opened, sweep, bad) if quarantine and bad else []
    if as_json:
        sys.stdout.write(json.dumps({"bad": bad, "quarantined": moved}) + "\n")
    else:
        out.print(f"sweep {sweep}: {checked} files checked, {len(bad)} bad", highlight=False)
        for path, reason in bad.items():
            out.print(f"  {path}: {reason}", highlight=False, soft_wrap=True)
        if moved:
            out.print(f"moved {len(moved)} to {opened.sweep_dir(sweep)}/quarantine/ "
                      "(`augworth resume` re-runs their cells)", highlight=False, soft_wrap=True)
    raise typer.Exit(3 if bad and not moved else 0)


# ----- compact --------------------------------------------------------------------------------------

@app.command()
@user_errors
def compact(
    sweep: Annotated[str, typer.Argument(help="Sweep name.")],
    store: StoreOpt = DEFAULT_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Merge a sweep's per-cell files into a few large files plus a manifest (takes the sweep's lock).

    Atomic: readers through augworth see every cell once throughout, and an interrupted compaction is
    finished by the next one. Plain readers of the folder see the same rows as before, in fewer files.
    """
    from .lock import SweepLock

    opened = open_sweep(store, sweep)
    with SweepLock(opened, sweep):  # no driver may write while files are merged
        report = compact_sweep(opened, sweep)
    if as_json:
        sys.stdout.write(json.dumps(dataclasses.asdict(report)) + "\n")
        return
    r = report
    out.print(f"sweep {sweep}: {r.cells:,} cells, {r.rows:,} rows; "
              f"files {r.files_before:,} -> {r.files_after:,} ({r.compacted_files} compacted, "
              f"{r.cell_files} per-cell); merged {r.cells_merged:,} cell files into {r.files_written} new, "
              f"removed {r.removed:,} files, in {r.seconds:.2f} s", highlight=False, soft_wrap=True)


def main() -> None:
    # A skipped store file is worth one line on stderr, not Python's warning format.
    warnings.showwarning = lambda message, *args, **kwargs: err.print(
        f"[yellow]augworth: warning:[/] {message}", highlight=False, soft_wrap=True)
    app()


if __name__ == "__main__":
    main()
