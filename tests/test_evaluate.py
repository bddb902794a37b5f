"""`augworth evaluate` without Ray (test_end_to_end.py runs it after a real sweep): bad input is refused before
anything is written, and cells without usable weights are named, never given rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import tiny_spec
from factories import finished_sweep
from typer.testing import CliRunner

from augworth.orchestrator.cli import app
from augworth.results import Store, read_results


@pytest.fixture
def swept(tmp_path, monkeypatch):
    """A store holding sweep 'e', every cell done (rows, no weights), and the plan that made it."""
    monkeypatch.chdir(tmp_path)
    store = Store(tmp_path / "store")
    return store, finished_sweep(store, tiny_spec("e"))


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


@pytest.mark.parametrize("eval_set, needle", [
    ("{name: test", "--eval-set '{name: test': not a YAML mapping"),
    ("nosuch", "unknown eval set 'nosuch'"),
    ("{name: test, label: corrupted}", "'corrupted' is corrupted {} in the sweep's frozen spec and test {} here"),
    ("{name: test, labl: again}", "labl"),
    ("again_test", "no kept weights for the 12 done cells of sweep 'e'"),  # a registered name, but no weights
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(swept, eval_set, needle):
    store, _ = swept
    if eval_set == "again_test":
        eval_set = "{name: test, label: again_test}"
    before = snapshot(Path(store.layout.root))
    result = CliRunner().invoke(app, ["evaluate", "e", "--eval-set", eval_set, "--store", "store", "--device", "cpu"])
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], result.stderr
    assert snapshot(Path(store.layout.root)) == before


def test_cells_with_missing_or_foreign_weights_are_named_and_keep_their_rows(swept):
    from augworth.trainables.datasets import load_dataset
    from augworth.trainables.device import device_settings
    from augworth.trainables.train import build_model
    from augworth.trainables.weights import save_weights

    store, plan = swept
    folder = store.location("e", "weights")
    data = load_dataset("digits")
    good, foreign = plan.cells[:2], plan.cells[2]
    for cell in good:
        save_weights(folder, cell, build_model(cell, data, device_settings("cpu")))
    # another cell's weights under this cell's name, and a file that is not a weights file at all
    shutil.copy(f"{folder}/{good[0].cell_key}.pt", f"{folder}/{foreign.cell_key}.pt")
    broken = plan.cells[3]
    Path(folder, f"{broken.cell_key}.pt").write_bytes(b"not torch")
    result = CliRunner().invoke(app, ["evaluate", "e", "--eval-set", "{name: test, label: again}",
                                      "--store", "store", "--device", "cpu"])
    assert result.exit_code == 3, (result.stdout, result.stderr, result.exception)
    assert "2 cells evaluated on again (2 rows added), 0 had them already, 10 could not be" in result.stdout
    assert "8 cells have no kept weights" in result.stdout
    assert f"{broken.cell_key}: ValueError: " in result.stdout and "not a weights file" in result.stdout
    assert f"{foreign.cell_key}: ValueError: " in result.stdout and f"holds the weights of cell {good[0].cell_key}" \
        in result.stdout
    rows = read_results(store, "e")
    again = rows[rows["eval_set"] == "again"]
    assert sorted(again["cell_key"]) == sorted(c.cell_key for c in good) and again["final"].all()
    assert again["accuracy"].between(0, 1).all() and len(rows) == 12 * 4 + 2


def test_a_weights_file_whose_model_is_not_a_state_dict_is_named_not_a_crash(swept):
    import torch

    store, plan = swept
    folder = store.location("e", "weights")
    Path(folder).mkdir(parents=True)
    cell = plan.cells[0]
    torch.save({"cell_key": cell.cell_key, "model": [1, 2, 3]}, f"{folder}/{cell.cell_key}.pt")
    result = CliRunner().invoke(app, ["evaluate", "e", "--eval-set", "{name: test, label: again}",
                                      "--store", "store", "--device", "cpu"])
    assert result.exit_code == 3, (result.stdout, result.stderr, result.exception)
    assert f"{cell.cell_key}: ValueError: " in result.stdout and "not a state dict" in result.stdout


def test_a_search_cell_which_the_grid_does_not_list_is_evaluated_from_its_own_rows(swept):
    import pyarrow as pa

    from augworth.trainables.datasets import load_dataset
    from augworth.trainables.device import device_settings
    from augworth.trainables.train import build_model
    from augworth.trainables.weights import save_weights

    store, plan = swept
    searched = plan.cells[0]  # a search's cells are in results/ but never in grid.parquet
    grid = store.read_grid("e")
    store.write_grid("e", [r for r in grid.to_pylist() if r["cell_key"] != searched.cell_key])
    assert searched.cell_key not in pa.Table.to_pydict(store.read_grid("e"))["cell_key"]
    save_weights(store.location("e", "weights"), searched, build_model(searched, load_dataset("digits"),
                                                                 device_settings("cpu")))
    result = CliRunner().invoke(app, ["evaluate", "e", "--eval-set", "{name: test, label: again}",
                                      "--store", "store", "--device", "cpu"])
    assert "1 cells evaluated on again (1 rows added)" in result.stdout, (result.stdout, result.stderr)
    rows = read_results(store, "e")
    assert list(rows.loc[rows["eval_set"] == "again", "cell_key"]) == [searched.cell_key]


def test_a_spec_frozen_by_a_driver_while_evaluate_checked_is_checked_again_and_kept(swept, monkeypatch):
    # between evaluate's checks and its lock, a driver extends the sweep (one seed more): evaluate must add its
    # eval set to that frozen spec, not write back the one it read before
    import augworth.orchestrator.evaluate as evaluate
    from augworth.search_spaces import parse_spec
    from augworth.trainables import weights
    from augworth.trainables.datasets import load_dataset
    from augworth.trainables.device import device_settings
    from augworth.trainables.train import build_model

    store, plan = swept
    cell = plan.cells[0]
    weights.save_weights(store.location("e", "weights"), cell, build_model(cell, load_dataset("digits"),
                                                                               device_settings("cpu")))
    extended = parse_spec(tiny_spec("e").replace("seeds: [0, 1]", "seeds: [0, 1, 2]")).to_yaml()
    kept_keys = weights.kept_keys

    def a_driver_extends_the_sweep_meanwhile(folder):
        if parse_spec(store.read_spec("e")).seeds != [0, 1, 2]:
            store.write_spec("e", extended)
        return kept_keys(folder)

    monkeypatch.setattr(weights, "kept_keys", a_driver_extends_the_sweep_meanwhile)
    evaluate.evaluate_sweep(store, "e", [{"name": "test", "label": "again"}])
    frozen = parse_spec(store.read_spec("e"))
    assert frozen.seeds == [0, 1, 2] and "again" in frozen.eval_set_meanings()
