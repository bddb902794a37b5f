"""Adaptive search: Optuna chooses each study's next parameter point, Ray Tune runs it, the store keeps its cells.

Why not Tune's `OptunaSearch` with `Tuner.restore`: after a SIGKILL its pickled searcher lags the study (it is
saved only at experiment snapshots), trials asked after the snapshot stay RUNNING for ever, a restarted trial
raises inside it, and it takes no Optuna pruner (DESIGN.md, measured facts). Here the study lives in persistent
Optuna storage (a journal file next to the results by default) and the store is the truth about cells:

- `StudySearcher` (search_tune.py: the Ray side), a `ray.tune.search.Searcher`, asks the studies for points as
  slots free up (one Tune trial per Optuna trial, its seeds' cells in lockstep: trainables/search_trial.py)
  and tells a trial only once its cells are in the store (complete), or once it was pruned; a trial whose
  cells failed is told FAIL.
- At start, `reconcile` settles every trial the last driver left RUNNING: told if all its cells are in the
  store, else re-run under the same number. So no number is lost or repeated, and a study ends with
  exactly `trials` finished trials.
- Once a study has its trials, its best point is trained again on fresh seeds (confirm.py), as one more Tune
  trial of the same shape: `best` reports that, not the selected maximum.
- Each sampler's seed is derived from the spec's seed, the study's name and the trials it already holds, so a
  restarted driver does not draw its earlier points again. The pruner's state (intermediate values, rungs)
  is in the study, so a resumed search prunes as if it had never stopped.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from augworth.results import Store
from augworth.search_spaces import Spec, Study

from .confirm import Confirmations
from .storage import open_storage, own_journal, storage_url

log = logging.getLogger("augworth")


def distributions(spec: Spec, policy: str) -> dict[str, Any]:
    """Optuna distributions of the searched parameters; a policy whose strength is a whole number draws whole
    numbers (ceil(low) .. floor(high))."""
    from optuna.distributions import FloatDistribution, IntDistribution

    from augworth.trainables.augmentations import AUGMENTATIONS

    assert spec.search is not None
    out: dict[str, Any] = {}
    for name, p in spec.search.params.items():
        if name == "strength" and AUGMENTATIONS.get(policy).meta.get("strength_integer", False):
            out[name] = IntDistribution(math.ceil(p.low), math.floor(p.high), log=p.log)
        else:
            out[name] = FloatDistribution(float(p.low), float(p.high), log=p.log)
    return out


def make_sampler(name: str, seed: int):
    import optuna

    if name == "tpe":  # constant_liar: trials running in parallel are not asked for the same region
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(name: str):
    import optuna

    return optuna.pruners.SuccessiveHalvingPruner() if name == "successive_halving" else optuna.pruners.NopPruner()


def sampler_seed(base: int, study: str, trials_so_far: int) -> int:
    """A new seed after every restart (a fixed one draws the same first points again)."""
    return (base * 1_000_003 + zlib.crc32(study.encode()) + 7919 * trials_so_far) % 2**31


def stored_accuracies(store: Store, sweep: str, keys: Iterable[str], eval_set: str) -> dict[str, dict[int, float]]:
    """step -> accuracy on `eval_set` of each of `keys` whose cell is in the store (absent keys are left out), read
    as the store's contract says readers read (a compacted file's copy over a leftover cell file)."""
    table = store.read_cells(sweep, list(keys))
    out: dict[str, dict[int, float]] = {}
    for key, step, label, accuracy in zip(*(table[c].to_pylist() for c in ("cell_key", "step", "eval_set", "accuracy")),
                                          strict=True):
        if label == eval_set:
            out.setdefault(key, {})[step] = accuracy
    return out


@dataclass
class StudyState:
    study: Study
    optuna_study: Any
    distributions: dict[str, Any]
    finished: int = 0  # complete or pruned
    failed: int = 0
    in_flight: int = 0


@dataclass
class SearchRun:
    """The driver's side of a search: the studies, the trials to re-run, and how each trial is settled."""

    spec: Spec
    store: Store
    url: str
    studies: dict[str, StudyState]
    rerun: list[dict[str, Any]] = field(default_factory=list)  # trial payloads of RUNNING trials to run again
    settled: dict[str, int] = field(default_factory=lambda: {"complete": 0, "pruned": 0, "failed": 0,
                                                             "confirmed": 0, "confirm_failed": 0})
    confirm: Confirmations | None = None  # the best points' confirmations (start_search makes it)
    search_slots: int = 1  # search trials that run at once (each holds its seeds' resources)
    # a point being trained, by its cells -> (study, trial) training it; trials that drew the same point meanwhile
    # wait for that one (the same cells, trained once) and are settled with it from the store
    owners: dict[frozenset[str], tuple[str, int]] = field(default_factory=dict)
    waiting: dict[tuple[str, int], list[tuple[str, int, list[str]]]] = field(default_factory=dict)

    @property
    def trials(self) -> int:
        assert self.spec.search is not None
        return self.spec.search.trials

    def payload(self, state: StudyState, number: int, params: dict[str, Any]) -> dict[str, Any]:
        """What the trainable gets: the trial's cells not yet in the store, and the stored seeds' accuracies. A
        point that an earlier trial drew (a discrete space) has its cells stored already: it trains nothing."""
        assert self.spec.search is not None
        cells = state.study.cells(params)
        objective = self.spec.search.objective.eval_set
        stored = stored_accuracies(self.store, self.spec.name, [c.cell_key for c in cells], objective)
        known: dict[str, list[float]] = {}
        for accuracies in stored.values():
            for step, acc in accuracies.items():
                known.setdefault(str(step), []).append(acc)
        return {"study": state.study.name, "number": number, "objective": objective,
                "prune": self.spec.search.pruner != "none", "known": known,
                "cells": [c.to_dict() for c in cells if c.cell_key not in stored],
                "keys": [c.cell_key for c in cells]}

    def ask(self, state: StudyState) -> dict[str, Any] | None:
        """A new trial's payload; None where its point is being trained by a trial in flight (it waits for it)."""
        trial = state.optuna_study.ask(state.distributions)
        cells = state.study.cells(trial.params)
        trial.set_user_attr("cell_keys", [c.cell_key for c in cells])
        trial.set_user_attr("seeds", state.study.seeds)
        state.in_flight += 1
        return self.claim(self.payload(state, trial.number, trial.params))

    def claim(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """`payload` to run; or None, and it waits, where a trial in flight trains the same cells."""
        keys = frozenset(payload["keys"])
        owner = self.owners.get(keys)
        if owner is not None:
            self.waiting.setdefault(owner, []).append((payload["study"], payload["number"], payload["keys"]))
            return None
        self.owners[keys] = (payload["study"], payload["number"])
        return payload

    def in_flight(self) -> int:
        return sum(s.in_flight for s in self.studies.values()) + (len(self.confirm.in_flight) if self.confirm else 0)

    def next_confirmation(self) -> dict[str, Any] | None:
        return self.confirm.payload(self.studies, self.trials) if self.confirm is not None else None

    def settle_confirmation(self, payload: dict[str, Any]) -> str:
        assert self.confirm is not None
        outcome = self.confirm.settle(payload)
        self.settled["confirmed" if outcome == "confirmed" else "confirm_failed"] += 1
        return outcome

    def idle(self) -> bool:
        """Nothing to run: no study wants a trial, none to re-run, no best point waiting for its confirmation."""
        unconfirmed = self.confirm.unconfirmed(self.studies, self.trials) if self.confirm is not None else 0
        return self.wanted() is None and not self.rerun and not unconfirmed

    def cell_counts(self) -> tuple[int, int]:
        """The search's cells in all (trials and confirmations) and those done before this run, for progress."""
        seeds = len(self.spec.seeds)
        total, done = len(self.studies) * self.trials * seeds, sum(s.finished for s in self.studies.values()) * seeds
        if self.confirm is not None:
            more, more_done = self.confirm.counts(self.studies, self.trials)
            total, done = total + more, done + more_done
        return total, done

    def settle(self, name: str, number: int, keys: list[str], pruned_at: int | None) -> str:
        """Tell the study how trial `number` ended, from the store: complete when every cell is there, pruned
        when the pruner stopped it (none of its cells is written), failed otherwise (a cell failed after its
        retries, or Tune gave the trial up). A trial Tune never finished (Ctrl-C, a killed driver) is not
        settled here: it stays RUNNING for the next driver's `start_search`."""
        import optuna

        assert self.spec.search is not None
        state = self.studies[name]
        stored = stored_accuracies(self.store, self.spec.name, keys, self.spec.search.objective.eval_set)
        if set(stored) == set(keys):
            finals = [acc[max(acc)] for acc in stored.values()]
            state.optuna_study.tell(number, sum(finals) / len(finals), skip_if_finished=True)
            outcome = "complete"
        elif pruned_at is not None:
            state.optuna_study.tell(number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
            outcome = "pruned"
        else:
            state.optuna_study.tell(number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            outcome = "failed"
        state.in_flight = max(0, state.in_flight - 1)
        if outcome == "failed":
            state.failed += 1
        else:
            state.finished += 1
        self.settled[outcome] += 1
        if self.owners.get(frozenset(keys)) == (name, number):
            del self.owners[frozenset(keys)]
        for other, other_number, other_keys in self.waiting.pop((name, number), []):
            self.settle(other, other_number, other_keys, pruned_at)  # the same cells: the same outcome
        return outcome

    def wanted(self) -> StudyState | None:
        """The study furthest from its `trials` finished trials that still wants one (None: none does). A study
        stops asking once as many of its trials failed as it wants finished: a broken setup, not bad luck."""
        open_ = [s for s in self.studies.values()
                 if s.finished + s.in_flight < self.trials and s.failed < self.trials]
        return min(open_, key=lambda s: (s.finished + s.in_flight, s.study.name), default=None)

    def open_studies(self) -> int:
        """Studies short of their `trials` finished trials, or of their best point's confirmation."""
        unconfirmed = self.confirm.unconfirmed(self.studies, self.trials) if self.confirm is not None else 0
        return sum(s.finished < self.trials for s in self.studies.values()) + unconfirmed


def start_search(spec: Spec, studies: list[Study], store: Store, *, retry_failed: bool = False) -> SearchRun:
    """Open (or create) every study, and reconcile the trials a killed driver left RUNNING against the store.
    `retry_failed`: confirmation cells recorded as failed are trained again (as `resume --retry-failed`)."""
    import optuna

    assert spec.search is not None
    url = storage_url(spec, store)
    storage = open_storage(url, own=url == own_journal(store, spec.name))  # under the sweep's lock (runner)
    run = SearchRun(spec, store, url, {}, confirm=Confirmations(spec, store, retry_failed))
    for study in studies:
        existing = len(_existing_trials(storage, study.name))
        optuna_study = optuna.create_study(
            study_name=study.name, storage=storage, direction="maximize", load_if_exists=True,
            sampler=make_sampler(spec.search.sampler.name,
                                 sampler_seed(spec.search.sampler.seed, study.name, existing)),
            pruner=make_pruner(spec.search.pruner))
        state = StudyState(study, optuna_study, distributions(spec, study.policy))
        run.studies[study.name] = state
        for trial in optuna_study.get_trials(deepcopy=False):
            if trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
                state.finished += 1
            elif trial.state == optuna.trial.TrialState.FAIL:
                state.failed += 1
            elif trial.state == optuna.trial.TrialState.RUNNING:
                params = _complete_params(optuna_study, trial, state.distributions)
                payload = run.payload(state, trial.number, params)
                if "cell_keys" not in trial.user_attrs:  # killed between its ask and this record
                    storage.set_trial_user_attr(trial._trial_id, "cell_keys", payload["keys"])
                state.in_flight += 1
                if "pruned_at" in trial.user_attrs:  # the pruner stopped it; the driver died before the tell
                    run.settle(study.name, trial.number, payload["keys"], trial.user_attrs["pruned_at"])
                elif not payload["cells"]:  # every cell is in the store: the driver died between writes and tell
                    run.settle(study.name, trial.number, payload["keys"], None)
                elif run.claim(payload) is not None:
                    run.rerun.append(payload)
    return run


def _complete_params(study: Any, trial: Any, distributions: dict[str, Any]) -> dict[str, Any]:
    """A RUNNING trial's parameters, drawing those a killed driver had not written yet (`ask` writes them one by
    one): its cells must be the point the study records."""
    import optuna

    if set(trial.params) >= set(distributions):
        return dict(trial.params)
    live = optuna.trial.Trial(study, trial._trial_id)
    for name, dist in distributions.items():
        if name not in trial.params:
            if isinstance(dist, optuna.distributions.IntDistribution):
                live.suggest_int(name, dist.low, dist.high, log=dist.log)
            else:
                live.suggest_float(name, dist.low, dist.high, log=dist.log)
    return dict(live.params)


def _existing_trials(storage: Any, name: str) -> list[Any]:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return []
    return storage.get_all_trials(study_id, deepcopy=False)
