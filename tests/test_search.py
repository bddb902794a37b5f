"""Adaptive search (the spec's `search:` block) on real Ray and a real Optuna journal: a search beats the default,
a pruned trial's cells never land as results, the trials a killed driver left running are settled against the
store, and a restarted sampler draws new points."""

from __future__ import annotations

import pytest
from conftest import ROOT  # noqa: F401  (the checkout first on sys.path)
from typer.testing import CliRunner

from augworth.orchestrator.cli import app
from augworth.orchestrator.plan import plan_sweep
from augworth.orchestrator.runner import run_plan
from augworth.orchestrator.search import make_sampler, sampler_seed, start_search
from augworth.orchestrator.storage import open_storage, storage_url
from augworth.results import Store, read_results

BASE = """\
name: {name}
dataset: {{name: digits}}
model: {{name: small_cnn, width: 8}}
augmentations: [{{policy: none}}, {{policy: crop}}]
data_sizes: {sizes}
seeds: [0, 1]
budget: {{steps: 40, batch_size: 32{eval_every}}}
optimizer: {{lr: 0.05, warmup_steps: 8}}
eval_sets: [test]
"""
SEARCH = BASE + """\
search:
  params: {params}
  trials: {trials}
  sampler: {{name: {sampler}, seed: 0}}
  pruner: {pruner}
execution: {{max_concurrent: {concurrent}}}
"""


def search_spec(name, *, params="{strength: {low: 0, high: 7}}", trials=6, sampler="tpe", pruner="none",
                concurrent=2, sizes="[200]", eval_every=""):
    return SEARCH.format(name=name, params=params, trials=trials, sampler=sampler, pruner=pruner,
                         concurrent=concurrent, sizes=sizes, eval_every=eval_every)


def run(store: Store, text: str):
    return run_plan(plan_sweep(text, "spec.yaml", store), store, show_progress=False)


def trials_of(store: Store, sweep: str):
    from augworth.analysis.search import read_trials
    from augworth.search_spaces import parse_spec

    return read_trials(storage_url(parse_spec(store.read_spec(sweep)), store), sweep)


@pytest.fixture(scope="module")
def searched(ray_local, tmp_path_factory):
    """A search of crop's strength and the learning rate at one size, over a range wide enough (lr down to 1e-4)
    that the pruner stops some trials; `none` is its grid reference. (The grid's best beside the search, and v
    against a reference curve, are tested on synthetic sweeps with a known truth: test_search_analysis.py.)"""
    store = Store(tmp_path_factory.mktemp("search") / "store")
    summary = run(store, search_spec("find", params=FIND_PARAMS, trials=5, pruner="successive_halving",
                                     eval_every=", eval_every: 10"))
    return store, summary


FIND_PARAMS = "{strength: {low: 0, high: 7}}"


def test_a_small_search_finds_a_better_strength_than_the_default(searched):
    store, summary = searched
    assert summary.exit_code == 0 and summary.search["failed"] == 0
    assert summary.search["complete"] + summary.search["pruned"] == 5
    from augworth.orchestrator.answers import best_frame
    from augworth.search_spaces import Cell
    from augworth.trainables.datasets import load_dataset
    from augworth.trainables.train import train_cell

    best = best_frame(str(store.layout.root), "find", n_bootstrap=200).iloc[0]
    assert best["study"] == "find/crop/n200" and best["complete"] == summary.search["complete"]
    assert best["seeds"] == 2 and best["accuracy_ci_low"] <= best["accuracy"] <= best["accuracy_ci_high"]
    assert best["v_note"].startswith("no fit: no reference curve")  # none at one size
    assert best["grid_points"] == 0  # crop is searched: no crop grid
    # the default (strength 4, the spec's lr 0.05), trained here on the same seeds as the searched cells
    rows = read_results(store, "find", final_only=True)
    cells = rows[rows["cell_key"].isin(trials_of(store, "find").set_index("number").loc[best["best_trial"],
                                                                                          "cell_keys"])]
    default = []
    for cell in cells.itertuples():
        fields = {k: getattr(cell, k) for k in Cell.__dataclass_fields__ if k in rows.columns}
        cell = Cell.from_dict(fields | {"strength": 4.0, "lr": 0.05, "views_r": None})
        default.append(train_cell(cell, load_dataset("digits"), ["test"]).evaluations[-1].accuracy)
    assert best["accuracy"] > sum(default) / len(default) and best["param_strength"] != 4


def confirming(rows):
    return rows["search_confirm"].fillna(False).astype(bool)


def test_each_trial_is_one_cell_per_seed_with_its_provenance_and_none_stays_a_grid_reference(searched):
    store, _ = searched
    rows = read_results(store, "find", final_only=True)
    grid = rows[rows["search_study"].isna()]
    assert set(grid["augmentation"]) == {"none"} and len(grid) == 2  # crop is searched: no grid cells
    cells = rows[rows["search_study"].notna() & ~confirming(rows)]
    assert set(cells["search_study"]) == {"find/crop/n200"} and cells["cell_key"].is_unique
    trials = trials_of(store, "find")
    assert sorted(trials["number"]) == list(range(5))
    done = store.done_keys("find")
    for t in trials.itertuples():
        mine = cells[cells["cell_key"].isin(t.cell_keys)]
        if t.state == "pruned":  # recorded in the study (its cells, the step), never in results/
            assert t.pruned_at is not None and 10 <= t.pruned_at < 40
            assert len(t.cell_keys) == 2 and not set(t.cell_keys) & done and mine.empty
        else:  # one stored cell per (trial, seed); the value told is their mean final accuracy
            same_point = {n for n, keys in zip(trials["number"], trials["cell_keys"], strict=True)
                          if set(keys) == set(t.cell_keys)}  # a repeated point reuses the first trial's cells
            assert t.state == "complete" and sorted(mine["seed"]) == [0, 1] and set(mine["search_trial"]) <= same_point
            assert mine["accuracy"].mean() == pytest.approx(t.value)
    assert (trials["state"] == "pruned").any()
    # what analyze, report and the questions read: the grid without the search's points
    assert set(read_results(store, "find", grid_only=True)["augmentation"]) == {"none"}


def test_the_best_trial_is_trained_again_on_fresh_seeds_and_best_reports_it(searched, tmp_path):
    """Once the study has its trials, its best point runs on seeds 2 and 3 (as many as the spec's, none of them
    the search's); `best --json` reports them as `confirm`, the search's own figure beside it."""
    import json

    store, summary = searched
    assert summary.search["confirmed"] == 1 and summary.search["confirm_failed"] == 0
    rows = read_results(store, "find", final_only=True)
    confirm = rows[confirming(rows)]
    trials = trials_of(store, "find")
    best = trials[trials["state"] == "complete"].sort_values(["value", "number"], ascending=[False, True]).iloc[0]
    assert sorted(confirm["seed"]) == [2, 3] and set(confirm["search_trial"]) == {best["number"]}
    assert set(confirm["search_study"]) == {"find/crop/n200"} and confirm["cell_key"].is_unique
    assert not set(confirm["cell_key"]) & set().union(*trials["cell_keys"])
    searched_cells = rows[rows["cell_key"].isin(best["cell_keys"])]
    for param in ("strength",):  # the best trial's point, to the digit
        assert set(confirm[param]) == set(searched_cells[param])
    result = CliRunner().invoke(app, ["best", "find", "--store", str(store.layout.root), "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)[0]
    assert record["best_trial"] == best["number"] and record["accuracy"] == pytest.approx(best["value"])
    got = record["confirm"]
    assert got["state"] == "done" and got["seeds"] == 2 and got["same_eval_set"] is True
    assert got["accuracy_mean"] == pytest.approx(confirm["accuracy"].mean())
    assert got["accuracy_ci_low"] <= got["accuracy_mean"] <= got["accuracy_ci_high"]
    result = CliRunner().invoke(app, ["best", "find", "--store", str(store.layout.root)])
    assert result.exit_code == 0 and "confirmed" in result.stdout and "selected" in result.stdout, result.output
    # the report shows best's table as the terminal prints it, not its raw frame
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "find", "--store", str(store.layout.root), "--bootstrap", "20",
                                      "--out", str(page)])
    assert result.exit_code == 0, result.output
    section = page.read_text()[page.read_text().index("<h2>Search: best points</h2>"):]
    assert "<th>selected: accuracy (95% CI)</th>" in section and "<th>confirmed: accuracy (95% CI)</th>" in section
    assert "confirmation notes" in section and "<th>confirm_v_ci_low</th>" not in section


def test_status_counts_trials_per_study_and_best_refuses_a_sweep_without_search(searched):
    store, _ = searched
    result = CliRunner().invoke(app, ["status", "find", "--store", str(store.layout.root), "--json"])
    import json

    counts = json.loads(result.stdout)["search"]
    assert [c["study"] for c in counts] == ["find/crop/n200"] and counts[0]["running"] == counts[0]["failed"] == 0
    assert counts[0]["complete"] + counts[0]["pruned"] == 5 and counts[0]["pruned"] >= 1
    store.write_spec("plain", store.read_spec("find").split("search:")[0].replace("name: find", "name: plain"))
    result = CliRunner().invoke(app, ["best", "plain", "--store", str(store.layout.root)])
    assert result.exit_code == 2 and "has no search block" in result.stderr


def test_extend_may_raise_trials_and_nothing_else_of_the_search(searched, tmp_path):
    store, _ = searched
    more = tmp_path / "more.yaml"
    find = dict(params=FIND_PARAMS, pruner="successive_halving", eval_every=", eval_every: 10")
    more.write_text(search_spec("find", trials=6, **find))
    result = CliRunner().invoke(app, ["run", str(more), "--store", str(store.layout.root), "--dry-run", "--extend"])
    assert result.exit_code == 0 and "1 studies x 6 trials x 2 seeds" in result.stdout, result.output
    more.write_text(search_spec("find", trials=6, sampler="random", **find))
    result = CliRunner().invoke(app, ["run", str(more), "--store", str(store.layout.root), "--dry-run", "--extend"])
    assert result.exit_code == 2 and "only trials may grow" in result.stderr


def test_a_running_trial_whose_cells_are_stored_is_told_not_rerun(searched):
    """The window between a trial's last write and its tell: the next driver tells it from the store."""
    import optuna

    store, _ = searched
    plan = plan_sweep(store.read_spec("find"), "spec.yaml", store)
    study = optuna.load_study(study_name="find/crop/n200", storage=open_storage(storage_url(plan.spec, store)))
    done = next(t for t in study.trials if t.state.name == "COMPLETE")
    study.enqueue_trial(done.params)
    again = study.ask(done.distributions)  # RUNNING, at a complete trial's point: its cells are all in the store
    run_ = start_search(plan.spec, plan.studies, store)
    assert run_.rerun == [] and run_.settled["complete"] == 1
    told = optuna.load_study(study_name="find/crop/n200", storage=open_storage(storage_url(plan.spec, store)))
    assert told.trials[again.number].state.name == "COMPLETE"
    assert told.trials[again.number].value == pytest.approx(done.value)


def test_a_restarted_sampler_draws_new_points():
    """A fixed seed repeats its first points after a restart; the seed moves with the trials already held."""
    import optuna

    def first_points(seed):
        study = optuna.create_study(sampler=make_sampler("tpe", seed), direction="maximize")
        return [study.ask({"s": optuna.distributions.FloatDistribution(0, 7)}).params["s"] for _ in range(3)]

    assert first_points(sampler_seed(0, "x/crop/n200", 0)) == first_points(sampler_seed(0, "x/crop/n200", 0))
    assert first_points(sampler_seed(0, "x/crop/n200", 0)) != first_points(sampler_seed(0, "x/crop/n200", 3))


def test_a_search_killed_mid_trial_resumes_exactly_once(ray_local, tmp_path):
    """SIGKILL of the driver and its local Ray while trials run, then while the best point is confirmed, then
    `resume`: every study ends with exactly `trials` complete trials numbered 0..trials-1, none running, one stored
    cell per (trial, seed) and one per confirmation seed; `--extend` to a fifth trial confirms the best again."""
    from test_crash import driver, kill, read_until

    text = search_spec(  # no grid: crop is searched, none left out
        "killed", params="{strength: {low: 0, high: 7}, lr: {low: 0.01, high: 0.2, log: true}}", trials=4,
        sizes="[60]").replace("{policy: none}, ", "")
    (tmp_path / "spec.yaml").write_text(text)
    first = driver("run", "spec.yaml", cwd=tmp_path)
    read_until(first, r"search \S+ trial \d+ complete")
    read_until(first, r"cell \w+ done")  # a cell of a trial still in flight
    kill(first)
    store = Store(tmp_path / "store")
    trials = trials_of(store, "killed")
    assert (trials["state"] == "running").any()  # left for the next driver to settle

    second = driver("resume", "killed", cwd=tmp_path)  # killed again once the confirmation is under way
    read_until(second, r"search \S+ confirmation of trial \d+ started")
    read_until(second, r"cell \w+ done")  # one of its cells, or both, stored
    kill(second)

    # resume (what `augworth resume` runs), on this module's Ray: the killed drivers' Rays died with them
    from augworth.orchestrator.plan import plan_resume

    summary = run_plan(plan_resume(store, "killed"), store, show_progress=False)
    assert summary.exit_code == 0 and summary.search["confirm_failed"] == 0
    trials = trials_of(store, "killed")
    assert set(trials["study"]) == {"killed/crop/n60"}
    assert sorted(trials["number"]) == [0, 1, 2, 3] and set(trials["state"]) == {"complete"}
    rows = read_results(store, "killed", final_only=True)
    cells = rows[rows["search_study"].notna() & ~confirming(rows)]
    assert cells["cell_key"].is_unique and len(cells) == 4 * 2  # trials x seeds
    assert (cells.groupby(["search_study", "search_trial"])["seed"].agg(sorted).map(tuple) == (0, 1)).all()
    for t in trials.itertuples():
        assert set(t.cell_keys) == set(cells.loc[(cells["search_study"] == t.study)
                                                 & (cells["search_trial"] == t.number), "cell_key"])
    best = trials.sort_values(["value", "number"], ascending=[False, True]).iloc[0]["number"]
    confirm = rows[confirming(rows)]
    assert sorted(confirm["seed"]) == [2, 3] and set(confirm["search_trial"]) == {best}
    assert confirm["cell_key"].is_unique and not store.failures("killed")

    # --extend to a fifth trial: the study's best is confirmed (again, if the fifth is better), each cell once
    extended = run_plan(plan_sweep(text.replace("trials: 4", "trials: 5"), "spec.yaml", store, extend=True),
                        store, show_progress=False)
    assert extended.exit_code == 0 and extended.search["complete"] == 1
    from augworth.analysis.search import read_confirmations

    trials = trials_of(store, "killed")
    best = trials.sort_values(["value", "number"], ascending=[False, True]).iloc[0]["number"]
    rows = read_results(store, "killed", final_only=True)
    confirm = rows[confirming(rows)]
    assert confirm["cell_key"].is_unique and len(rows[rows["search_study"].notna()]) == 5 * 2 + len(confirm)
    recorded = read_confirmations(storage_url(plan_resume(store, "killed").spec, store), "killed")
    assert recorded["killed/crop/n60"]["trial"] == best
    assert sorted(confirm.loc[confirm["search_trial"] == best, "seed"]) == [2, 3]
    assert len(confirm) == (2 if extended.search["confirmed"] == 0 else 4)

    # then the journal's last line torn (a full disk, a power loss, NFS) and Optuna's lock file left behind: the
    # next resume cuts the tail under the sweep's lock, settles the trial whose last event was lost against the
    # store, and every later read works (Optuna would append after the torn line and fail from then on)
    from pathlib import Path

    from augworth.search_spaces import parse_spec

    journal = Path(storage_url(parse_spec(store.read_spec("killed")), store))
    journal.write_bytes(journal.read_bytes()[:-7])
    Path(f"{journal}.lock").symlink_to(journal)
    assert run_plan(plan_resume(store, "killed"), store, show_progress=False).exit_code == 0
    again = trials_of(store, "killed")
    assert sorted(again["number"]) == [0, 1, 2, 3, 4] and set(again["state"]) == {"complete"}
    assert journal.read_bytes().endswith(b"\n") and not Path(f"{journal}.lock").exists()

