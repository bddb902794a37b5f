"""`augworth analyze SWEEP --question ood|invariance|stochasticity`: the paper's three questions, as tables, JSON,
CSV and figures. The registries say which corruptions each eval set holds and which ones each policy's op space
covers; `analysis` gets them as plain mappings (it imports no torch)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from .cli_common import BadInput, open_sweep, out, show

if TYPE_CHECKING:
    import pandas as pd

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
    """Policy -> the corruptions it covers: those the ops it applies can make (`trainables.augmentations.covers`)."""
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
    from analysis.questions import QuestionError, invariance, ood
    from analysis.stochasticity import stochasticity
    from results import read_results
    from search_spaces import parse_spec

    store = open_sweep(store_root, sweep)
    # probes sit on earlier steps; the cells of a search are no grid
    results = read_results(store, sweep, grid_only=True, final_only=question != "stochasticity")
    if results.empty:
        raise BadInput(f"sweep {sweep!r} has no finished cells yet")
    try:
        if question == "ood":
            spec = parse_spec(store.read_spec(sweep), store.spec_source(sweep))
            rows = ood(results, reference=reference, in_distribution=in_distribution, n_bootstrap=n_bootstrap,
                       seed=seed, covers=policy_covers(set(results["augmentation"].dropna())),
                       corruptions=eval_set_corruptions(spec.eval_requests()))
            return {"ood": rows}
        if question == "invariance":
            return {"invariance": invariance(results, reference=reference, n_bootstrap=n_bootstrap, seed=seed)}
        return stochasticity(results, reference=reference, n_bootstrap=n_bootstrap, seed=seed)
    except QuestionError as exc:  # what the sweep lacks; any other error is a bug and shows as one
        raise BadInput(f"--question {question}: {str(exc).split(': ', 1)[-1]}") from None


def question_sweep(sweep: str, store_root: str, question: str, *, reference: str, n_bootstrap: int, seed: int,
                   as_json: bool, csv_path: Path | None, out_dir: Path | None) -> None:
    if question not in QUESTIONS:
        raise BadInput(f"--question {question!r}: give one of {', '.join(QUESTIONS)}")
    if n_bootstrap < 1:
        raise BadInput(f"--bootstrap {n_bootstrap}: --question needs resamples for its intervals (try 1000)")
    import pandas as pd

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


def by_group(rows: pd.DataFrame, key: str) -> list[tuple[str, pd.DataFrame]]:
    """(title prefix, rows) per value of `key` and per group where group columns vary (width, model ...)."""
    from results import GROUP_COLUMNS

    varying = [c for c in GROUP_COLUMNS if c in rows.columns and rows[c].astype(str).nunique() > 1]
    out = []
    for values, part in rows.groupby([*varying, key], dropna=False, sort=False) if varying else rows.groupby(
            key, sort=False):
        values = values if isinstance(values, tuple) else (values,)
        where = ", ".join(f"{c}={v}" for c, v in zip(varying, values, strict=False))
        out.append((escape(str(values[-1])) + (f" ({escape(where)})" if where else ""), part))
    return out


def tables(frames: dict[str, pd.DataFrame], question: str) -> list:
    from analysis import tables_questions as t

    made = []
    if question == "ood":
        for name, part in by_group(frames["ood"], "treatment"):
            made.append(t.ood_table(part, f"{name}: worth in distribution and under shift"))
    elif question == "invariance":
        for name, part in by_group(frames["invariance"], "eval_set"):
            made.append(t.invariance_table(part, f"augmentation vs invariance on {name}"))
    else:
        reps = frames["repetitions"]
        for name, part in by_group(reps, "eval_set") if not reps.empty else []:
            made.append(t.repetition_table(part, f"views on {name}: random, fixed, same batch"))
        for name, part in by_group(frames["probe_differences"], "probe") if not frames["probe_differences"].empty \
                else []:
            made.append(t.probe_difference_table(part, f"probes: each view mode − random views, {name}"))
        for name, part in by_group(frames["correlations"], "probe") if not frames["correlations"].empty else []:
            made.append(t.correlation_table(part, f"do the probes track the worth? {name}"))
    return made
