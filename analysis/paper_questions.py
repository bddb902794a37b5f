"""The questions `augworth analyze --question NAME` answers, registered by name: a new question is one module with
one decorated class (`@register_question`), which answers from the sweep's rows, draws its picture and builds its
terminal tables. The paper's three are registered here; the command line and the report look them up in
`QUESTIONS` and branch on nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd


@dataclass(frozen=True)
class QuestionInputs:
    """What a question needs besides the rows, as plain data (analysis imports no registry of trainables)."""

    reference: str = "none"
    n_bootstrap: int = 1000
    seed: int = 0
    in_distribution: str = "test"
    covers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # policy -> corruptions its ops make
    corruptions: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # eval set label -> its corruptions


class Question:
    """A question: `answer` gives its frames by name; `draw` writes its pictures; `tables` builds its rich tables."""

    name: ClassVar[str]
    final_only: ClassVar[bool] = True  # reads the final rows only (probes sit on earlier steps)
    labels_shifts: ClassVar[bool] = False  # needs `covers` and `corruptions` (the command line loads registries)

    def answer(self, results: pd.DataFrame, inputs: QuestionInputs) -> dict[str, pd.DataFrame]:
        raise NotImplementedError

    def draw(self, frames: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
        raise NotImplementedError

    def tables(self, frames: dict[str, pd.DataFrame]) -> list[Any]:
        raise NotImplementedError


QUESTIONS: dict[str, Question] = {}


def register_question(name: str) -> Callable[[type[Question]], type[Question]]:
    def register(cls: type[Question]) -> type[Question]:
        if name in QUESTIONS:
            raise ValueError(f"question {name!r} is registered already")
        cls.name = name
        QUESTIONS[name] = cls()
        return cls

    return register


@register_question("ood")
class Ood(Question):
    labels_shifts = True

    def answer(self, results: pd.DataFrame, inputs: QuestionInputs) -> dict[str, pd.DataFrame]:
        from .questions import ood

        return {"ood": ood(results, reference=inputs.reference, in_distribution=inputs.in_distribution,
                           n_bootstrap=inputs.n_bootstrap, seed=inputs.seed, covers=inputs.covers,
                           corruptions=inputs.corruptions)}

    def draw(self, frames: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
        from .plots_questions import plot_ood

        return [plot_ood(frames["ood"], out_dir / "question_ood.png")]

    def tables(self, frames: dict[str, pd.DataFrame]) -> list[Any]:
        from .tables_questions import by_group, ood_table

        return [ood_table(part, f"{name}: worth in distribution and under shift")
                for name, part in by_group(frames["ood"], "treatment")]


@register_question("invariance")
class Invariance(Question):
    def answer(self, results: pd.DataFrame, inputs: QuestionInputs) -> dict[str, pd.DataFrame]:
        from .questions import invariance

        return {"invariance": invariance(results, reference=inputs.reference, n_bootstrap=inputs.n_bootstrap,
                                         seed=inputs.seed)}

    def draw(self, frames: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
        from .plots_questions import plot_invariance

        return [plot_invariance(frames["invariance"], out_dir / "question_invariance.png")]

    def tables(self, frames: dict[str, pd.DataFrame]) -> list[Any]:
        from .tables_questions import by_group, invariance_table

        return [invariance_table(part, f"augmentation vs invariance on {name}")
                for name, part in by_group(frames["invariance"], "eval_set")]


@register_question("stochasticity")
class Stochasticity(Question):
    final_only = False

    def answer(self, results: pd.DataFrame, inputs: QuestionInputs) -> dict[str, pd.DataFrame]:
        from .stochasticity import stochasticity

        return stochasticity(results, reference=inputs.reference, n_bootstrap=inputs.n_bootstrap, seed=inputs.seed)

    def draw(self, frames: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
        from .plots_questions import plot_repetitions

        if frames["repetitions"].empty:
            return []
        return [plot_repetitions(frames["repetitions"], out_dir / "question_stochasticity.png")]

    def tables(self, frames: dict[str, pd.DataFrame]) -> list[Any]:
        from . import tables_questions as t

        made = []
        parts = (("repetitions", "eval_set", t.repetition_table, "views on {}: random, fixed, same batch"),
                 ("probe_differences", "probe", t.probe_difference_table,
                  "probes: each view mode − random views, {}"),
                 ("correlations", "probe", t.correlation_table, "do the probes track the worth? {}"))
        for frame, key, table, title in parts:
            if not frames[frame].empty:
                made += [table(part, title.format(name)) for name, part in t.by_group(frames[frame], key)]
        return made
