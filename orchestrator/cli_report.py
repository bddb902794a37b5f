"""`augworth report SWEEP [--out FILE.html]`: the sweep's analysis as one self-contained HTML file
(`analysis/report.py` writes it; this gathers what it shows). Starts no Ray."""

from __future__ import annotations

import dataclasses
import os
import shlex
import tempfile
import warnings
from pathlib import Path
from typing import Annotated

import typer

from .answers import DEFAULT_BOOTSTRAP, best_frame, best_table
from .cli_common import DEFAULT_STORE, BadInput, StoreOpt, SweepArg, open_sweep, out, user_errors
from .cli_questions import answer, draw, question_names, question_tables

SEARCH_NOTE = ("The trials of each study, as `augworth status` counts them; the best points as `augworth best` prints "
               "them (its caption says how to read the selected and the confirmed figures); and the note of each "
               "confirmation: which eval sets selected and confirmed it.")


@user_errors
def report(
    sweep: SweepArg,
    store: StoreOpt = DEFAULT_STORE,
    out_path: Annotated[Path | None, typer.Option("--out", help="The HTML file (default: <store>/<sweep>/report.html, "
                                                  "or ./<sweep>-report.html for a remote store).")] = None,
    reference: Annotated[str, typer.Option("--reference", help="The reference treatment.")] = "none",
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Resamples of whole seeds for the 95% intervals."
                                           )] = DEFAULT_BOOTSTRAP,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the resampling.")] = 0,
) -> None:
    """Write one self-contained HTML file: spec, status, exchange rates with intervals and diagnostics, the
    paper's three questions where the sweep has them, every figure inlined, and the commands behind them."""
    from augworth.analysis import AnalysisInputError, analyze
    from augworth.analysis.report import Section, rate_tables, render, table_frame
    from augworth.analysis.treatments import treatment_labels
    from augworth.results import GROUP_COLUMNS

    from .status import sweep_status

    if bootstrap < 1:
        raise BadInput(f"--bootstrap {bootstrap}: the report's intervals need resamples (try 1000)")
    opened = open_sweep(store, sweep)
    try:
        with warnings.catch_warnings():  # the report shows them in its text (result.notes)
            warnings.simplefilter("ignore")
            result = analyze(opened, sweep, reference=reference, n_bootstrap=bootstrap, seed=seed)
    except AnalysisInputError as exc:
        raise BadInput(str(exc)) from None
    if out_path is None:
        out_path = Path(opened.location(sweep, "report.html")) if opened.local else Path(f"{sweep}-report.html")
    status = dataclasses.asdict(sweep_status(opened, sweep))
    rates, first = result.rates, result.in_distribution
    labels = treatment_labels(rates, ~rates["is_reference"])
    mine = (rates["eval_set"] == first).to_numpy()
    sections = [Section("Summary", text=f"The exchange rates on '{first}'; below it, the shifted eval sets' v [95% "
                        "CI] at the smallest size. Every table, with its diagnostics, follows.",
                        tables=rate_tables(rates[mine], labels[mine], GROUP_COLUMNS)[:1],
                        lines=result.shift_lines())]
    with tempfile.TemporaryDirectory() as tmp:
        figures = [(f"{what} on '{name}'", path.read_bytes()) for name, paths in result.draw(tmp).items()
                   for what, path in zip(("scaling", "effective samples"), paths, strict=True)]
        sections.append(Section("Exchange rates", text=" ".join(result.notes), figures=figures,
                                tables=rate_tables(rates, labels, GROUP_COLUMNS)))
        common = (f"{shlex.quote(sweep)} --store {shlex.quote(store)} --reference {shlex.quote(reference)} "
                  f"--bootstrap {bootstrap} --seed {seed}")
        commands = [f"augworth status {shlex.quote(sweep)} --store {shlex.quote(store)}",
                    f"augworth analyze {common} --json"]
        for question in question_names():
            try:
                with warnings.catch_warnings(record=True) as caught:  # the few-seeds warnings go into the page
                    warnings.simplefilter("always")
                    frames = answer(store, sweep, question, reference=reference, n_bootstrap=bootstrap, seed=seed)
            except BadInput as exc:
                sections.append(Section(f"Question: {question}", text=f"not answered for this sweep: {exc}"))
                continue
            if all(f.empty for f in frames.values()):
                continue
            pictures = [(f"question {question}", p.read_bytes()) for p in draw(frames, question, Path(tmp))]
            sections.append(Section(f"Question: {question}", text=_warned(caught), figures=pictures,
                                    tables=[table_frame(t) for t in question_tables(frames, question)]))
            commands.append(f"augworth analyze {common} --question {question} --csv {question}.csv")
        if status.get("search"):
            import pandas as pd

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                frame = best_frame(store, sweep, reference=reference, n_bootstrap=bootstrap, seed=seed)
            tables = [("trials per study", pd.DataFrame(status["search"]))]
            if not frame.empty:
                tables += [table_frame(best_table(frame)),
                           ("the best points' confirmation notes", frame[["study", "confirm_note"]])]
            sections.append(Section("Search: best points", text=" ".join([SEARCH_NOTE, _warned(caught)]).strip(),
                                    tables=tables))
            commands.append(f"augworth best {common.replace(f' --seed {seed}', '')} --json")
    commands.append(f"augworth report {common} --out {shlex.quote(str(out_path))}")
    text = render(f"augworth report: {sweep}", sections, spec_text=opened.read_spec(sweep), status=status,
                  commands=commands)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(f".{out_path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, out_path)  # a reader never sees half a report
    out.print(f"report: {out_path} ({len(text) / 1e6:.1f} MB)", highlight=False)


def _warned(caught: list[warnings.WarningMessage]) -> str:
    """The warnings a part of the report raised (few seeds, fits at a bound), once each, as its text."""
    return " ".join(dict.fromkeys(str(w.message) for w in caught))
