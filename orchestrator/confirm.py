"""Confirmation: once a study has its trials, its best point is trained again on seeds the search never used.

The best of N trials is not an estimate of itself: its mean over the search's seeds is the maximum of N noisy
means, optimistic by the selection (a simulation in the issue that asked for this: 50 trials x 5 seeds, all equal
in truth, gave a t interval covering the truth in 0.79 of cases). The confirmation's seeds (`confirm_seeds`) are
fresh draws of everything a seed fixes (initial weights, batch order, subset), so its mean is not selected.

The confirmation's cells are ordinary cells (exactly once: a cell in the store is never trained again), written
with the study, the trial and `search_confirm` as provenance. The study is not told about them: a confirmation is
not a trial (the sampler would learn from it). It records which trial and cells it confirms as a study user
attribute (`CONFIRM_ATTR`), which `status` and `best` read; the store stays the truth about what is done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from augworth.results import Store
from augworth.search_spaces import Spec, confirm_eval_set, confirm_seeds

CONFIRM_ATTR = "confirm"  # study user attribute: {"trial": number, "seeds": [...], "cell_keys": [...]}


def best_trial(optuna_study: Any) -> Any | None:
    """The study's best complete trial: the highest value, the lowest number among equals (as `best` reads it)."""
    import optuna

    complete = optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: (t.value, -t.number), default=None)


@dataclass
class Confirmations:
    """The driver's confirmations: which studies are confirmed, in flight, or tried in this run."""

    spec: Spec
    store: Store
    retry_failed: bool = False
    in_flight: set[str] = field(default_factory=set)
    tried: set[str] = field(default_factory=set)  # looked at once per run, as a grid cell (retries are the cell's)

    @property
    def seeds(self) -> list[int]:
        return confirm_seeds(self.spec)

    def wanted(self, state: Any, trials: int, stored: set[str], failed: set[str]) -> tuple[Any, list[Any]] | None:
        """(best trial, its confirmation cells still to train) of a study with its trials; None when there is
        nothing to train (no seeds, trials still to run, no complete trial, all stored, or failed and not retried)."""
        if not self.seeds or state.finished < trials or state.in_flight:
            return None
        best = best_trial(state.optuna_study)
        if best is None:
            return None
        cells = state.study.confirm_cells(best.params, self.seeds)
        todo = [c for c in cells if c.cell_key not in stored and (self.retry_failed or c.cell_key not in failed)]
        return (best, cells) if todo else None

    def payload(self, states: dict[str, Any], trials: int) -> dict[str, Any] | None:
        """The next confirmation to run (a search trial's payload, unpruned, with `confirm`), or None. Each study
        is looked at once per run, when it has its trials: the store is listed then, not at every free slot."""
        ready = [s for name, s in sorted(states.items()) if name not in self.tried
                 and s.finished >= trials and not s.in_flight]
        if not ready or not self.seeds:
            return None
        stored, failed = self.store.done_keys(self.spec.name), set(self.store.failures(self.spec.name))
        for state in ready:
            self.tried.add(state.study.name)
            found = self.wanted(state, trials, stored, failed)
            if found is None:
                continue
            best, cells = found
            keys = [c.cell_key for c in cells]
            state.optuna_study.set_user_attr(CONFIRM_ATTR, {"trial": best.number, "seeds": self.seeds,
                                                            "cell_keys": keys})
            self.in_flight.add(state.study.name)
            return {"study": state.study.name, "number": best.number, "objective": confirm_eval_set(self.spec),
                    "prune": False, "known": {}, "confirm": True, "keys": keys,
                    "cells": [c.to_dict() for c in cells if c.cell_key not in stored]}
        return None

    def settle(self, payload: dict[str, Any]) -> str:
        """'confirmed' when every cell of the confirmation is in the store, else 'failed' (recorded under failures/
        like any cell: `resume --retry-failed` tries it again)."""
        self.in_flight.discard(payload["study"])
        return "confirmed" if set(payload["keys"]) <= self.store.done_keys(self.spec.name) else "failed"

    def unconfirmed(self, states: dict[str, Any], trials: int) -> int:
        """Studies with their trials whose confirmation is neither in the store nor failed: interrupted."""
        stored, failed = self.store.done_keys(self.spec.name), set(self.store.failures(self.spec.name))
        return sum(self.wanted(s, trials, stored, failed) is not None for s in states.values())

    def counts(self, states: dict[str, Any], trials: int) -> tuple[int, int]:
        """Confirmation cells in all (one per seed per study) and already in the store."""
        stored, done = self.store.done_keys(self.spec.name), 0
        for state in states.values():
            best = best_trial(state.optuna_study) if state.finished >= trials else None
            if best is not None:
                done += sum(c.cell_key in stored for c in state.study.confirm_cells(best.params, self.seeds))
        return len(states) * len(self.seeds), done
