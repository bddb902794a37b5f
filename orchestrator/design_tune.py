"""The design mode inside Ray: one `Tuner.fit` whose searcher asks `analysis.design.next_cells` for a cell each time
a slot is free, from what the store holds and the cells in flight, until the design stops.

The store is the truth, as for the grid and the search: a driver restarted after a kill reads it again and goes
on with the cells the design picks from there; a cell in the store is never picked again.
"""

from __future__ import annotations

from typing import Any

import ray
from ray import tune
from ray.tune import PlacementGroupFactory
from ray.tune.search import ConcurrencyLimiter, Searcher

from augworth.results import Store

from .designs import candidate_cells, design_of
from .progress import SweepProgress
from .resources import cell_bundle, concurrent_cells


class DesignSearcher(Searcher):
    """Tune's searcher over the grid's cells (`{"chunk": i}`, one cell a chunk), in the design's order."""

    def __init__(self, store: Store, spec: Any, cells: list[dict[str, Any]], progress: SweepProgress, *,
                 retry_failed: bool) -> None:
        super().__init__(metric=None, mode=None)
        self.store, self.spec, self.progress, self.retry_failed = store, spec, progress, retry_failed
        self.index = {c["cell_key"]: i for i, c in enumerate(cells)}
        self.grid = candidate_cells(spec, cells)
        self.design = design_of(spec)
        self.running: dict[str, str] = {}  # Tune trial id -> cell key
        self.completed = 0
        self.waited: tuple[int, frozenset[str]] | None = None  # nothing to pick then: no need to ask again
        self.rows: Any = None  # the done cells' final grid rows, each cell read once (`_results`)
        self.have: set[str] = set()

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]  # FINISHED is a str
        from augworth.analysis.design import next_cells

        now = (self.completed, frozenset(self.running.values()))
        if now == self.waited:
            return None
        sweep = self.spec.name
        results = self._results()
        failed = set() if self.retry_failed else set(self.store.failures(sweep))
        picks = next_cells(results, self.grid, self.design, running=set(self.running.values()) | failed, n=1)
        if not picks:
            self.waited = now
            return None if self.running else Searcher.FINISHED
        self.running[trial_id] = picks[0]
        return {"chunk": self.index[picks[0]]}

    def _results(self) -> Any:  # pandas.DataFrame
        """The final grid rows of the store's done cells. Only cells new since the last call are read: a stored
        cell never changes, and reading the whole sweep at every pick costs O(cells²) over a large design."""
        new = sorted(self.store.done_keys(self.spec.name) - self.have)
        if new or self.rows is None:
            import pandas as pd

            rows = self.store.read_cells(self.spec.name, new).to_pandas()
            rows = rows[rows["final"].fillna(False).astype(bool) & rows["search_study"].isna()]
            fresh = self.rows is None or self.rows.empty
            self.rows = rows if fresh else pd.concat([self.rows, rows], ignore_index=True)
            self.have |= set(new)
        return self.rows

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if self.running.pop(trial_id, None) is not None:
            self.completed += 1

    def __getstate__(self) -> dict[str, Any]:
        return {}  # Tune pickles its search algorithm into the experiment state; resume never uses Tuner.restore

    def save(self, checkpoint_path: str) -> None:  # the store is the state: nothing to pickle
        return None

    def restore(self, checkpoint_path: str) -> None:
        return None


def run_design(plan: Any, store: Store, context: Any, progress: SweepProgress, *, writer: Any, finished: Any,
               finished_run: str, tune_dir: str) -> None:
    from augworth.trainables.trainable import run_chunk

    spec, ex = plan.spec, plan.spec.execution
    cells = [{"cell_key": c.cell_key} | c.to_dict() for c in plan.cells]
    bundle = cell_bundle(ex)
    searcher = DesignSearcher(store, spec, cells, progress, retry_failed=plan.retry_failed)
    trainable = tune.with_resources(
        tune.with_parameters(run_chunk, chunks=[[{k: v for k, v in c.items() if k != "cell_key"}] for c in cells],
                             context=context, finished=finished, finished_run=finished_run),
        PlacementGroupFactory([bundle]))
    tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=concurrent_cells(ray.cluster_resources(), bundle,
                                                                                    ex.max_concurrent)),
            num_samples=-1, reuse_actors=True),
        run_config=tune.RunConfig(name=f"{spec.name}-design", storage_path=tune_dir, verbose=0, callbacks=[writer],
                                  failure_config=tune.FailureConfig(max_failures=2)),
    ).fit()
