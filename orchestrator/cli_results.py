"""The `augworth` commands over a sweep's results: query, analyze, status, verify, compact, evaluate. None starts
Ray; `query` imports neither Ray nor torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .answers import DEFAULT_BOOTSTRAP, analyze_sweep
from .cli_common import (
    DEFAULT_STORE,
    BadInput,
    JsonOpt,
    StoreOpt,
    SweepArg,
    err,
    open_sweep,
    out,
    show,
    user_errors,
)

# ----- query and analyze ----------------------------------------------------------------------------

@user_errors
def query(
    sweep: SweepArg,
    sql: Annotated[str, typer.Argument(help='SQL over the view `results`, e.g. "SELECT count(*) FROM results".')],
    store: StoreOpt = DEFAULT_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Run SQL (DuckDB) over a sweep's results, exposed as the view `results`."""
    import duckdb

    from augworth.results import connect

    con = connect(open_sweep(store, sweep), sweep)
    try:
        df = con.execute(sql).df()
    except duckdb.Error as exc:
        raise BadInput(f"query failed: {str(exc).splitlines()[0]}") from None
    if as_json:
        sys.stdout.write(df.to_json(orient="records", date_format="iso") + "\n")
        return
    from augworth.analysis.tables import frame_table

    show(frame_table(df))


@user_errors
def analyze(
    sweep: SweepArg,
    store: StoreOpt = DEFAULT_STORE,
    eval_set: Annotated[str | None, typer.Option("--eval-set", help="Only this eval set.")] = None,
    as_json: JsonOpt = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where the pictures go.")] = None,
    reference: Annotated[str, typer.Option("--reference", help="The reference treatment.")] = "none",
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Resamples of whole seeds for the 95% intervals "
                                           "(0: none).")] = DEFAULT_BOOTSTRAP,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the resampling: the same seed, the same intervals.")] = 0,
    pair: Annotated[tuple[str, str] | None, typer.Option(
        "--compare", help="Two treatments as the tables name them, e.g. --compare 'crop(2)' trivialaugment(1): "
        "v_A − v_B per size with its interval and a sign-flip test over seeds (Holm-corrected).")] = None,
    weights: Annotated[str, typer.Option("--weights", help="equal: every point counts once; inverse_variance: "
                                         "1/(variance over seeds) per size, floored.")] = "equal",
    question: Annotated[str | None, typer.Option(
        "--question", help="ood | invariance | stochasticity: the paper's questions with paired intervals (table, "
        "--json, --csv, PNG).")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="With --question: also write its rows to this CSV "
                                                  "(stochasticity's three parts stacked, a `part` column).")] = None,
    brief: Annotated[bool, typer.Option("--brief", help="The in-distribution table only, a line per shifted eval "
                                        "set, and the command that writes every table (what `demo` prints).")] = False,
) -> None:
    """Fit power laws and print exchange rates (Eq. 1 of Geiping et al.) with 95% intervals; draw the curves."""
    if question is not None:
        from .cli_questions import question_sweep

        question_sweep(sweep, store, question, reference=reference, n_bootstrap=bootstrap, seed=seed,
                       as_json=as_json, csv_path=csv_path, out_dir=out_dir)
        return
    if csv_path is not None:
        raise BadInput("--csv goes with --question (the exchange rates: --json)")
    analyze_sweep(sweep, store, eval_set=eval_set, as_json=as_json, out_dir=out_dir, reference=reference,
                  n_bootstrap=bootstrap, seed=seed, pair=pair, weights=weights, brief=brief)


@user_errors
def status(
    sweep: SweepArg,
    store: StoreOpt = DEFAULT_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Done / failed / running / missing cells (unchosen: those a design has not picked), from the store alone."""
    from .status import sweep_status

    st = sweep_status(open_sweep(store, sweep), sweep)
    if as_json:
        sys.stdout.write(json.dumps(dataclasses.asdict(st), default=str) + "\n")
        return
    t = st.totals
    driver = (f"driver: pid {st.driver.get('pid')} on {st.driver.get('host')} since {st.driver.get('since')}"
              if st.driver else "no driver running")
    out.print(f"sweep {sweep}: {t['cells']} cells: {t['done']} done, {t['failed']} failed, {t['running']} running, "
              f"{t[st.states[-1]]} {st.states[-1]}; {driver}", highlight=False)
    for note in st.notes:
        out.print(note, highlight=False)
    for line in st.design:
        out.print(line, highlight=False, markup=False)
    from augworth.analysis.tables import status_tables

    for table in status_tables(st, st.states):
        show(table)


@user_errors
def verify(
    sweep: SweepArg,
    store: StoreOpt = DEFAULT_STORE,
    quarantine: Annotated[bool, typer.Option("--quarantine", help="Move bad files to <sweep>/quarantine/.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Check every result file (readable, schema, cell key matches name and content). Exit 3 if any is bad."""
    from augworth.results import quarantine as quarantine_files
    from augworth.results import verify as verify_sweep
    from augworth.results.query import verified_files

    from .lock import SweepLock

    opened = open_sweep(store, sweep)
    with SweepLock(opened, sweep) if quarantine else contextlib.nullcontext():  # moving files: no driver runs
        files = verified_files(opened, sweep)
        bad = verify_sweep(opened, sweep, files)
        moved = quarantine_files(opened, sweep, bad) if quarantine and bad else []
    if as_json:
        sys.stdout.write(json.dumps({"bad": bad, "quarantined": moved}) + "\n")
    else:
        out.print(f"sweep {sweep}: {len(files)} files checked, {len(bad)} bad", highlight=False)
        for path, reason in bad.items():
            out.print(f"  {path}: {reason}", highlight=False, soft_wrap=True)
        if moved:
            out.print(f"moved {len(moved)} to {opened.location(sweep, 'quarantine')}/ "
                      "(`augworth resume` re-runs their cells)", highlight=False, soft_wrap=True)
    raise typer.Exit(3 if bad and not moved else 0)


# ----- compact --------------------------------------------------------------------------------------

@user_errors
def compact(
    sweep: SweepArg,
    store: StoreOpt = DEFAULT_STORE,
    as_json: JsonOpt = False,
) -> None:
    """Merge a sweep's per-cell files into a few large files plus a manifest (takes the sweep's lock).

    Atomic: readers through augworth see every cell once throughout, and an interrupted compaction is
    finished by the next one. Plain readers of the folder see the same rows as before, in fewer files.
    """
    from augworth.results import compact as compact_sweep

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




# ----- evaluate -------------------------------------------------------------------------------------

@user_errors
def evaluate(
    sweep: SweepArg,
    eval_sets: Annotated[list[str], typer.Option(
        "--eval-set", help="An eval set's name, or a YAML mapping as in a spec's eval_sets, e.g. "
        "'{label: c10c_s5, name: cifar10c, root: /data/CIFAR-10-C, options: {severity: 5}}'. Repeat for more.")],
    store: StoreOpt = DEFAULT_STORE,
    device: Annotated[str, typer.Option("--device", help="auto (a GPU if there is one), cpu or cuda.")] = "auto",
    as_json: JsonOpt = False,
) -> None:
    """Evaluate finished cells on more eval sets from their kept weights (execution.keep_weights), without
    training them again: each gets final-step rows for the new sets, and the sets join the sweep's spec.
    Exit 3 if some cells lacking the rows could not be evaluated (no or bad weights)."""
    from .evaluate import evaluate_sweep, parse_eval_set

    if device not in {"auto", "cpu", "cuda"}:
        raise BadInput(f"--device {device!r}: use auto, cpu or cuda")
    if device != "cpu":
        import torch

        if device == "cuda" and not torch.cuda.is_available():
            raise BadInput("--device cuda: this machine has no CUDA device")
        device = "cuda" if torch.cuda.is_available() else "cpu"
    opened = open_sweep(store, sweep)
    report = evaluate_sweep(opened, sweep, [parse_eval_set(v) for v in eval_sets], device=device,
                            log=lambda line: err.print(line, highlight=False))
    missed = len(report.no_weights) + len(report.bad_weights)
    if as_json:
        sys.stdout.write(json.dumps(dataclasses.asdict(report)) + "\n")
    else:
        out.print(f"sweep {sweep}: {report.evaluated} cells evaluated on {', '.join(report.eval_sets)} "
                  f"({report.rows_added} rows added), {report.had_them} had them already, {missed} could not "
                  f"be, in {report.seconds:.1f} s", highlight=False, soft_wrap=True)
        if report.no_weights:
            out.print(f"  {len(report.no_weights)} cells have no kept weights (trained without "
                      f"execution.keep_weights), e.g. {report.no_weights[0]}", highlight=False, soft_wrap=True)
        for key, why in report.bad_weights.items():
            out.print(f"  {key}: {why}", highlight=False, soft_wrap=True)
    raise typer.Exit(3 if missed else 0)
