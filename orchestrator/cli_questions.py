"""`augworth analyze SWEEP --question ood|invariance|stochasticity`: the paper's three questions, as tables, JSON,
CSV and figures. The registries say which corruptions each eval set holds and which ones each policy's op space
covers; `analysis` gets them as plain mappings (it imports no torch)."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cli_common import BadInput, open_sweep, out, show

if TYPE_CHECKING:
    import pandas as pd

def eval_set_corruptions(requests: Iterable[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Label -> the corruptions the eval set holds: its option `corruptions`, else its registry entry's."""
    from augworth.trainables.datasets import EVAL_SETS

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
    from augworth.trainables.augmentations import covers

    found = {}
    for name in names:
        try:
            found[name] = covers(name)
        except KeyError:
            found[name] = ()
    return found


def answer(store_root: str, sweep: str, name: str, *, reference: str, n_bootstrap: int, seed: int,
           in_distribution: str = "test") -> dict[str, pd.DataFrame]:
    """The question's frames, by name (one for ood and invariance, three for stochasticity)."""
    from augworth.analysis.paper_questions import QUESTIONS, QuestionInputs
    from augworth.analysis.questions import QuestionError
    from augworth.results import read_results
    from augworth.search_spaces import parse_spec

    question = QUESTIONS[name]
    store = open_sweep(store_root, sweep)
    # probes sit on earlier steps; the cells of a search are no grid
    results = read_results(store, sweep, grid_only=True, final_only=question.final_only)
    if results.empty:
        raise BadInput(f"sweep {sweep!r} has no finished cells yet")
    inputs = QuestionInputs(reference=reference, n_bootstrap=n_bootstrap, seed=seed, in_distribution=in_distribution)
    if question.labels_shifts:  # the registries (torch) load only for a question that labels shifts
        spec = parse_spec(store.read_spec(sweep), store.spec_source(sweep))
        inputs = dataclasses.replace(inputs, covers=policy_covers(set(results["augmentation"].dropna())),
                                     corruptions=eval_set_corruptions(spec.eval_requests()))
    try:
        return question.answer(results, inputs)
    except QuestionError as exc:  # what the sweep lacks; any other error is a bug and shows as one
        raise BadInput(f"--question {name}: {str(exc).split(': ', 1)[-1]}") from None


def question_names() -> tuple[str, ...]:
    from augworth.analysis.paper_questions import QUESTIONS

    return tuple(QUESTIONS)


def question_sweep(sweep: str, store_root: str, question: str, *, reference: str, n_bootstrap: int, seed: int,
                   as_json: bool, csv_path: Path | None, out_dir: Path | None) -> None:
    if question not in question_names():
        raise BadInput(f"--question {question!r}: give one of {', '.join(question_names())}")
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
        out_dir = Path(store.location(sweep, "figures")) if store.local else Path("augworth-figures") / sweep
    for path in draw(frames, question, out_dir):
        out.print(f"picture: {path}", highlight=False)
    for table in question_tables(frames, question):
        show(table)


def question_tables(frames: dict[str, pd.DataFrame], question: str) -> list[Any]:
    """The question's terminal tables (rich); the report shows the same ones."""
    from augworth.analysis.paper_questions import QUESTIONS

    return QUESTIONS[question].tables(frames)


def draw(frames: dict[str, pd.DataFrame], question: str, out_dir: Path) -> list[Path]:
    from augworth.analysis.paper_questions import QUESTIONS

    return QUESTIONS[question].draw(frames, out_dir)
