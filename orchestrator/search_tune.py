"""The search's side inside Ray: the Tune `Searcher` over the persistent studies, the pruning actor, and the one
`Tuner.fit` that runs every study (`search.py` holds the studies themselves and needs no Ray).

Ray is imported at load: the runner imports this module once it runs a search, so the classes live at module
level rather than in factories that deferred the import.
"""

from __future__ import annotations

import warnings
from typing import Any

import ray
from ray import tune
from ray.tune import PlacementGroupFactory
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from augworth.trainables.messages import SearchTrialEnd, decode

from .progress import SweepProgress
from .resources import cell_bundle, concurrent_cells
from .search import SearchRun, make_pruner
from .storage import open_storage


@ray.remote(num_cpus=0, max_restarts=0)
class PruningOracle:
    """Reports a trial's intermediate mean to its study and says whether the pruner stops it."""

    def __init__(self, url: str, pruner: str) -> None:
        warnings.filterwarnings("ignore", message=".*already reported.*")
        self.storage, self.pruner = open_storage(url), pruner
        self.studies: dict[str, Any] = {}

    def report(self, study: str, number: int, step: int, value: float) -> bool:
        import optuna

        if study not in self.studies:
            self.studies[study] = optuna.load_study(study_name=study, storage=self.storage,
                                                    pruner=make_pruner(self.pruner))
        loaded = self.studies[study]
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(loaded._study_id, number)
        trial = optuna.trial.Trial(loaded, trial_id)
        trial.report(value, step)
        if trial.should_prune():
            trial.set_user_attr("pruned_at", step)
            return True
        return False

def pruning_oracle(url: str, pruner: str) -> Any:
    """An actor on the driver's node that reports a trial's intermediate mean to its study and says whether the
    pruner stops it (the storage is the driver's: a journal file on its disk)."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return PruningOracle.options(  # type: ignore[attr-defined]  # a Ray actor class
        scheduling_strategy=here).remote(url, pruner)


class StudySearcher(Searcher):
    """Tune's searcher over the persistent studies: the grid's chunks first (`grid_chunks` of them), then
    re-runs, then the study that wants a trial most."""

    def __init__(self, run: SearchRun, progress: SweepProgress, grid_chunks: int = 0) -> None:
        super().__init__(metric=None, mode=None)
        self.run, self.progress = run, progress
        self.grid = list(range(grid_chunks))
        self.trials: dict[str, dict[str, Any]] = {}  # Tune trial id -> payload (and pruned step)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # Searcher.FINISHED is a str
        if self.grid:
            return {"chunk": self.grid.pop(0)}
        payload = None
        if self.run.rerun:
            payload = self.run.rerun.pop(0)
        elif len(self.trials) < self.run.search_slots:
            payload = self.run.next_confirmation()  # a study with its trials: its best point on fresh seeds
            while payload is None and (state := self.run.wanted()) is not None:
                payload = self.run.ask(state)  # None: its point is in training; it waits for it
        if payload is None:
            # a running trial may fail and want a new one; trials that wait settle with the one they wait for
            return None if self.run.in_flight() else Searcher.FINISHED
        self.trials[trial_id] = payload | {"pruned_at": None}
        self.progress.log(f"search {payload['study']} {_what(payload)} started")
        return {"search": payload}

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        message = decode(result)
        if isinstance(message, SearchTrialEnd) and trial_id in self.trials:
            self.trials[trial_id]["pruned_at"] = message.pruned_at

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        payload = self.trials.pop(trial_id, None)
        if payload is None:
            return
        if payload.get("confirm"):
            outcome = self.run.settle_confirmation(payload)
        else:
            outcome = self.run.settle(payload["study"], payload["number"], payload["keys"], payload["pruned_at"])
        self.progress.log(f"search {payload['study']} {_what(payload)} {outcome}")

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its search algorithm into the experiment state; resume never uses Tuner.restore
        return {}

    def save(self, checkpoint_path: str) -> None:  # the study and the store are the state: nothing to pickle
        return None

    def restore(self, checkpoint_path: str) -> None:
        return None


def _what(payload: dict[str, Any]) -> str:
    return f"confirmation of trial {payload['number']}" if payload.get("confirm") else f"trial {payload['number']}"


def trial_resources(cell: dict[str, float], seeds: int) -> dict[str, float]:
    """A search trial trains its seeds side by side: each seed's cell's resources, capped at the largest node's
    (a trial runs on one node; above that its seeds share them)."""
    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    out = {}
    for name, per_cell in cell.items():
        largest = max((n.get(name, 0.0) for n in nodes), default=0.0)
        out[name] = min(per_cell * seeds, max(per_cell, largest)) if per_cell else 0.0
    return out


def run_studies(run: SearchRun, context: Any, progress: SweepProgress, *, chunks: list[list[dict[str, Any]]],
                writer: Any, finished: Any, finished_run: str, tune_dir: str) -> None:
    """One Tuner.fit over every study, after the grid's `chunks` (its last round): Tune asks `StudySearcher`
    for a trial whenever a slot is free."""
    from augworth.trainables.search_trial import run_trial  # torch: loaded where a search runs, as before

    spec = run.spec
    assert spec.search is not None
    ex = spec.execution
    oracle = pruning_oracle(run.url, spec.search.pruner) if spec.search.pruner != "none" else None
    cell = cell_bundle(ex)
    trial = trial_resources(cell, len(spec.seeds))
    run.search_slots = concurrent_cells(ray.cluster_resources(), trial, ex.max_concurrent)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, chunks=chunks, context=context, finished=finished, oracle=oracle,
                             finished_run=finished_run),
        lambda config: PlacementGroupFactory([trial if "search" in config else cell]))
    searcher = ConcurrencyLimiter(StudySearcher(run, progress, len(chunks)),
                                  max_concurrent=concurrent_cells(ray.cluster_resources(), cell, ex.max_concurrent))
    tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=-1, reuse_actors=True),
        run_config=tune.RunConfig(name=f"{spec.name}-search", storage_path=tune_dir, verbose=0, callbacks=[writer],
                                  failure_config=tune.FailureConfig(max_failures=2)),
    ).fit()
