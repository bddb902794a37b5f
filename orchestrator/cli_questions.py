"""`augworth analyze SWEEP --question ood|invariance|stochasticity`: the paper's three questions, as tables, JSON,
CSV and figures. The registries say which corruptions each eval set holds and which ones each policy's op space
covers; `analysis` gets them as plain mappings (it imports no torch)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from rich.markup import escape

from results import read_results

from .cli_common import BadInput, open_sweep, out, show

QUESTIONS = ("ood", "invariance", "stochasticity")


def eval_set_corruptions(requests: Iterable[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Label -> the corruptions the eval set holds: its option `corruptions`, else its registry entry's."""
    from trainables.datasets import EVAL_SETS

    found = {}
    for request in requests:
        chosen = request.get("options", {}).get("corruptions")
        if chosen is None:
            try:
                chosen = EVAL_SETS.get(request["name"]).meta.get("corruptions", ())
            except KeyError:  # a plugin's eval set that is not loaded here: undeclared
                chosen = ()
        found[request["label"]] = (chosen,) if isinstance(chosen, str) else tuple(chosen)
    return found


def policy_covers(names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Policy -> the corruptions its op space includes (the augmentation registry's `covers`)."""
    from trainables.augmentations import covers

    found = {}
    for name in names:
        try:
            found[name] = covers(name)
        except KeyError:
            found[name] = ()
    return found


def answer(store_root: str, sweep: str, question: str, *, reference: str, n_bootstrap: int, seed: int,
           in_distribution: str = "test") -> dict[str, pd.DataFrame]:
    """The question's frames, by name (one for ood and invariance, three for stochasticity)."""
    from analysis.questions import invariance, ood
    from analysis.stochasticity import stochasticity
    from search_spaces import parse_spec

    store = open_sweep(store_root, sweep)
    results = read_results(store, sweep, final_only=question != "stochasticity")  # probes sit on earlier steps
    if results.empty:
        raise BadInput(f"sweep {sweep!r} has no finished cells yet")
    try:
        if question == "ood":
            spec = parse_spec(store.read_spec(sweep), f"{sweep}/spec.yaml")
            rows = ood(results, reference=reference, in_distribution=in_distribution, n_bootstrap=n_bootstrap,
                       seed=seed, covers=policy_covers(set(results["augmentation"].dropna())),
                       corruptions=eval_set_corruptions(spec.eval_requests()))
            return {"ood": rows}
        if question == "invariance":
            return {"invariance": invariance(results, reference=reference, n_bootstrap=n_bootstrap, seed=seed)}
        return stochasticity(results, reference=reference, n_bootstrap=n_bootstrap, seed=seed)
    except ValueError as exc:
        raise BadInput(f"--question {question}: {str(exc).split(': ', 1)[-1]}") from None


def question_sweep(sweep: str, store_root: str, question: str, *, reference: str, n_bootstrap: int, seed: int,
                   as_json: bool, csv_path: Path | None, out_dir: Path | None) -> None:
    if question not in QUESTIONS:
        raise BadInput(f"--question {question!r}: give one of {', '.join(QUESTIONS)}")
    if n_bootstrap < 1:
        raise BadInput(f"--bootstrap {n_bootstrap}: --question needs resamples for its intervals (try 1000)")
    frames = answer(store_root, sweep, question, reference=reference, n_bootstrap=n_bootstrap, seed=seed)
    if all(f.empty for f in frames.values()):
        raise BadInput(f"--question {question}: sweep {sweep!r} has no treatments this question compares")
    if csv_path is not None:
        stacked = pd.concat([f.assign(part=name) for name, f in frames.items() if not f.empty], ignore_index=True)
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        stacked.to_csv(csv_path, index=False)
    if as_json:
        records = {name: json.loads(f.to_json(orient="records")) for name, f in frames.items()}
        sys.stdout.write(json.dumps(records.get(question, records)) + "\n")
        return
    store = open_sweep(store_root, sweep)
    if out_dir is None:
        out_dir = Path(store.sweep_dir(sweep)) / "figures" if store.local else Path("augworth-figures") / sweep
    for path in draw(frames, question, out_dir):
        out.print(f"picture: {path}", highlight=False)
    for table in tables(frames, question):
        show(table)


def draw(frames: dict[str, pd.DataFrame], question: str, out_dir: Path) -> list[Path]:
    from analysis.plots_questions import plot_invariance, plot_ood, plot_repetitions

    if question == "ood":
        return [plot_ood(frames["ood"], out_dir / "question_ood.png")]
    if question == "invariance":
        return [plot_invariance(frames["invariance"], out_dir / "question_invariance.png")]
    if frames["repetitions"].empty:
        return []
    return [plot_repetitions(frames["repetitions"], out_dir / "question_stochasticity.png")]


def tables(frames: dict[str, pd.DataFrame], question: str) -> list:
    from analysis import tables_questions as t

    made = []
    if question == "ood":
        rows = frames["ood"]
        for name in dict.fromkeys(rows["treatment"]):
            made.append(t.ood_table(rows[rows["treatment"] == name],
                                    f"{escape(name)}: worth in distribution and under shift"))
    elif question == "invariance":
        rows = frames["invariance"]
        for name in dict.fromkeys(rows["eval_set"]):
            made.append(t.invariance_table(rows[rows["eval_set"] == name],
                                           f"augmentation vs invariance on '{escape(name)}'"))
    else:
        reps = frames["repetitions"]
        for name in dict.fromkeys(reps["eval_set"]) if not reps.empty else []:
            made.append(t.repetition_table(reps[reps["eval_set"] == name], f"views on '{escape(name)}': random, fixed, "
                                           "same batch"))
        if not frames["probe_differences"].empty:
            made.append(t.probe_difference_table(frames["probe_differences"], "probes: each view mode − random views"))
        if not frames["correlations"].empty:
            made.append(t.correlation_table(frames["correlations"], "do the probes track the worth?"))
    return made
