"""The commands that run sweeps: run, submit, resume, demo, presets (registered in cli.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Column, Table

from augworth.search_spaces import preset_names, preset_path, read_spec_text

from .answers import analyze_sweep
from .cli_common import (
    DEFAULT_STORE,
    AddressOpt,
    NoProgressOpt,
    RetryFailedOpt,
    StoreOpt,
    SweepArg,
    err,
    open_store,
    open_sweep,
    out,
    results_place,
    show,
    user_errors,
)

if TYPE_CHECKING:
    from .plan import Plan

# ----- run ------------------------------------------------------------------------------------------

def _run(text: str, source: str, store_root: str, *, address: str | None, dry_run: bool, extend: bool,
         retry_failed: bool, progress: bool) -> int:
    from augworth.search_spaces import parse_spec

    from .plan import plan_sweep

    store = open_store(store_root)

    def make_plan() -> Plan:
        planned = plan_sweep(text, source, store, extend=extend, retry_failed=retry_failed)
        if not dry_run and not (address or os.environ.get("RAY_ADDRESS")):
            from .runner import check_gpus

            check_gpus(planned, None)  # this machine's devices: refused before any cell is scheduled
        return planned

    if dry_run:
        plan = make_plan()
    else:
        from .startup import plan_while_ray_starts

        plan = plan_while_ray_starts(make_plan, spec=parse_spec(text, source), store=store, address=address,
                                     retry_failed=retry_failed)
    sweep = plan.spec.name
    for note in plan.notes:
        err.print(f"warning: {note}", highlight=False, soft_wrap=True)
    if dry_run:
        from .estimate import estimate_cpu_seconds

        seconds = estimate_cpu_seconds(plan, store)
        out.print(f"sweep {sweep}: {len(plan.cells)} cells, {len(plan.done)} done, {len(plan.failed)} failed, "
                  f"{len(plan.pending)} to run; estimated {seconds:,.0f} CPU-seconds "
                  f"(~{seconds / 3600:.2f} CPU-hours) for those", highlight=False)
        if plan.spec.design is not None:
            budget = plan.spec.design.budget
            out.print(f"design: trains of those what resolves its {sum(len(t.sizes) for t in plan.spec.design.targets)}"
                      f" target(s) first, and stops when they are resolved"
                      + (f" or at {budget.cells} cells" if budget.cells else "")
                      + (f" or {budget.hours:g} training hours" if budget.hours else ""), highlight=False)
        if plan.studies and plan.spec.search is not None:
            from augworth.search_spaces import confirm_seeds

            trials, seeds, confirm = plan.spec.search.trials, len(plan.spec.seeds), len(confirm_seeds(plan.spec))
            cells = len(plan.studies) * (trials * seeds + confirm)
            out.print(f"search: {len(plan.studies)} studies x {trials} trials x {seeds} seeds, then each study's best "
                      f"point on {confirm} fresh seeds (at most {cells} cells; pruned trials train fewer steps)",
                      highlight=False)
        return 0
    from .runner import run_plan

    summary = run_plan(plan, store, address=address, show_progress=progress, log_cells=not progress)
    out.print(f"sweep {sweep}: {summary.done} cells done now, {summary.skipped} were already done, "
              f"{summary.failed} failed now ({summary.failed_total} failure records in the sweep)", highlight=False)
    if summary.search is not None:
        out.print(f"search: {summary.search['complete']} trials complete, {summary.search['pruned']} pruned, "
                  f"{summary.search['failed']} failed, {summary.search['confirmed']} best points confirmed, "
                  f"{summary.search['confirm_failed']} confirmations failed now"
                  + (f"; {summary.search_open} studies short of their trials or confirmation: "
                     f"`augworth resume {sweep}`"
                     if summary.search_open else ""), highlight=False)
    if plan.spec.design is not None:
        from .designs import design_now, stop_line, target_lines

        state = design_now(store, plan.spec)
        for line in [stop_line(state), *target_lines(state)]:
            out.print(line, highlight=False, markup=False)
    if summary.unfinished:
        out.print(f"{summary.unfinished} cells did not finish (interrupted, or their trials were lost): "
                  f"`augworth resume {sweep}` runs them", highlight=False)
    out.print(f"store: {results_place(store, sweep)}", highlight=False)
    return summary.exit_code


def spec_source(spec: Path, smoke: bool = False) -> tuple[str, str]:
    """(text, source) of SPEC: a YAML file, or the name of a preset; `smoke`: its scaled-down version."""
    if not spec.exists() and str(spec) in preset_names():
        spec = preset_path(str(spec))
    text = read_spec_text(spec)
    if not smoke:
        return text, str(spec)
    from augworth.search_spaces import apply_smoke, parse_spec

    return apply_smoke(parse_spec(text, str(spec)), str(spec)).to_yaml(), f"{spec} (smoke)"


SmokeOpt = Annotated[bool, typer.Option("--smoke", help="Run the spec's `smoke:` scale-down (seconds, on CPU).")]


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

    from augworth.search_spaces import parse_spec

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


@user_errors
def resume(
    sweep: SweepArg,
    store: StoreOpt = DEFAULT_STORE,
    address: AddressOpt = None,
    retry_failed: RetryFailedOpt = False,
    no_progress: NoProgressOpt = False,
) -> None:
    """Run the cells of a sweep that are not done yet, from its frozen spec in the store."""
    opened = open_sweep(store, sweep)
    text = opened.read_spec(sweep)
    code = _run(text, opened.spec_source(sweep), store, address=address, dry_run=False, extend=False,
                retry_failed=retry_failed, progress=not no_progress)
    raise typer.Exit(code)


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
    analyze_sweep("digits-demo", store, eval_set=None, as_json=False, out_dir=out_dir, reference="none", brief=True)
    raise typer.Exit(code)


@user_errors
def presets(
    name: Annotated[str | None, typer.Argument(help="Print this preset's YAML (to copy and edit).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The list as JSON.")] = False,
) -> None:
    """List the preset specs shipped with augworth, with cell counts and estimated GPU-hours."""
    from augworth.search_spaces import grid_size, load_spec

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
        table.add_row(str(r["preset"]), f"{r['cells']:,}", f"{r['gpu_hours']:,.1f}", "yes" if r["smoke"] else "",
                      str(r["description"]))
    from augworth.analysis.tables import whole

    show(whole(table, "preset"))
    out.print("GPU-hours: training images / an assumed throughput per model (orchestrator/estimate.py), not a "
              "measurement. `augworth presets NAME` prints one; `augworth run NAME --smoke` runs its "
              "scale-down.", highlight=False)
