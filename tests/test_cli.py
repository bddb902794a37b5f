"""The `augworth` command line as a user runs it: subprocesses, real exit codes, real stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CLI, ROOT, tiny_spec
from factories import make_cell, rows_for

from augworth.results import Store

ENV = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT), "COLUMNS": "200"}


def augworth(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


def in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The same command through typer's runner in this process, for commands that start no Ray: an interpreter
    costs ~5 s here, and the exit path is the same."""
    from typer.testing import CliRunner

    from augworth.orchestrator.cli import app

    before = os.getcwd()
    os.chdir(cwd)
    try:
        invoked = CliRunner().invoke(app, list(args))
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(list(args), invoked.exit_code, invoked.stdout, invoked.stderr)


def write_bad(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


BAD_SPECS = {
    "unknown policy": (tiny_spec().replace("policy: crop", "policy: blur"), "augmentations[1].policy"),
    "unknown model": (tiny_spec().replace("small_cnn", "resnet9000"), "model.name"),
    "unknown data set": (tiny_spec().replace("{name: digits}", "{name: mnist}"), "dataset.name"),
    "unknown eval set": (tiny_spec().replace("[test, corrupted]", "[test, imagenet_c]"), "eval_sets[1]"),
    "strength out of range": (tiny_spec().replace("strength: [1]", "strength: [-1]"), "augmentations[1].strength"),
    "size larger than the pool": (tiny_spec().replace("[40, 80, 160]", "[40, 5000]"), "data_sizes[1]"),
    "string for an int": (tiny_spec().replace("width: 4", 'width: "4"'), "model.width"),
    "unknown key": (tiny_spec().replace("seeds:", "seedz: [1]\nseeds:"), "seedz"),
    "duplicate key": (tiny_spec() + "seeds: [3]\n", "duplicate key 'seeds'"),
    "not a mapping": ("- 1\n- 2\n", "must be a mapping"),
    # Tune would wait for ever for GPUs that are not there; refused before Ray starts (no address: this machine's)
    "more GPUs than there are": (tiny_spec().replace("cells_per_trial: 3", "cells_per_trial: 3, gpus_per_cell: 64"),
                                 "execution.gpus_per_cell"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_specs_exit_2_with_one_line_and_write_nothing(tmp_path, case, monkeypatch):
    # in this process (typer's runner): an interpreter per case cost ~6 s each; the exit path is the same
    from typer.testing import CliRunner

    from augworth.orchestrator.cli import app

    text, needle = BAD_SPECS[case]
    spec = write_bad(tmp_path, text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # as the subprocesses' ENV: no cluster to ask for GPUs
    invoked = CliRunner().invoke(app, ["run", str(spec), "--store", "store"])
    result = subprocess.CompletedProcess([], invoked.exit_code, invoked.stdout, invoked.stderr)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.yaml" in lines[0] and needle in lines[0], result.stderr
    assert not (tmp_path / "store").exists()


def test_a_missing_spec_file_exits_2_naming_it(tmp_path):
    result = augworth("run", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2 and "nope.yaml: file not found" in result.stderr


def test_a_bad_name_found_while_ray_starts_is_one_line_exit_2(tmp_path):
    # the command line plans a new sweep while its local Ray starts (orchestrator/startup.py): the planner's
    # error stops that Ray again and is still the only line, and nothing is written
    spec = write_bad(tmp_path, BAD_SPECS["unknown policy"][0])
    result = augworth("run", str(spec), "--store", "store", cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "augmentations[1].policy" in lines[0], result.stderr
    assert not (tmp_path / "store").exists()


def test_a_grid_sweeps_driver_loads_no_torch_and_its_trials_need_no_runtime_env(tmp_path):
    # what a grid sweep's driver imports once it has its plan (orchestrator/startup.py): torch stays in the
    # planning child and the workers. Tune's trial actors get no runtime env of their own, so Ray hands them
    # the workers it started ahead rather than new processes
    code = (
        "import sys\n"
        "import augworth.orchestrator.runner as runner\n"
        "from augworth.trainables.trainable import CellContext, run_chunk\n"
        "import augworth.orchestrator.writer\n"
        "runner.trials_in_prestarted_workers()\n"
        "from augworth.trainables.checkpoint import Checkpointer\n"
        f"Checkpointer({str(tmp_path)!r}, 'cell', 1).clear()\n"  # a written cell's checkpoint goes
        "from ray.tune.execution.class_cache import _ActorClassCache\n"
        "class Trial: pass\n"
        "print('ENV', _ActorClassCache().get(Trial)._default_options.get('runtime_env'))\n"
        "print('TORCH', 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ENV {}" in result.stdout and "TORCH False" in result.stdout, result.stdout


def test_query_runs_sql_over_the_results_view_without_ray_or_torch(tmp_path):
    store = Store(tmp_path / "store")
    for seed in range(3):
        cell = make_cell(seed=seed)
        store.write_cell("q", cell.cell_key, rows_for(cell))
    store.write_spec("q", "name: q\n")
    code = (
        "import sys\n"
        "from augworth.orchestrator.cli import app\n"
        "try:\n"
        f"    app(['query', 'q', 'SELECT count(DISTINCT cell_key) AS n FROM results', '--store', "
        f"{str(tmp_path / 'store')!r}, '--json'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = sorted(m for m in ('torch', 'ray', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0]) == [{"n": 3}]
    assert "HEAVY []" in result.stdout


def test_dry_run_and_status_never_import_ray(tmp_path):
    """Neither starts Ray, nor even imports it: a dry run plans and estimates in this process; status reads files."""
    (tmp_path / "spec.yaml").write_text(tiny_spec("dry"))
    store = Store(tmp_path / "store")
    cells = [make_cell(seed=seed) for seed in range(2)]
    store.write_grid("seen", [{"cell_key": c.cell_key} | c.to_dict() for c in cells])
    store.write_spec("seen", tiny_spec("seen"))
    store.write_cell("seen", cells[0].cell_key, rows_for(cells[0]))
    code = (
        "import sys\n"
        "from augworth.orchestrator.cli import app\n"
        "for args in (['run', 'spec.yaml', '--dry-run'], ['status', 'seen', '--json']):\n"
        "    try:\n"
        "        app([*args, '--store', 'store'])\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, (args, e.code)\n"
        "print('RAY', sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "12 cells, 0 done" in result.stdout and '"done": 1' in result.stdout
    assert "RAY []" in result.stdout
    assert not (tmp_path / "store" / "dry").exists()  # the dry run wrote nothing


def test_query_errors_are_one_line_exit_2(tmp_path):
    Store(tmp_path / "store").write_spec("q", "name: q\n")
    bad_sql = augworth("query", "q", "SELECT nope FROM results", "--store", "store", cwd=tmp_path)
    assert bad_sql.returncode == 2 and "query failed" in bad_sql.stderr
    no_sweep = augworth("query", "other", "SELECT 1", "--store", "store", cwd=tmp_path)
    assert no_sweep.returncode == 2 and "no sweep 'other'" in no_sweep.stderr
    bad_name = augworth("query", "../x", "SELECT 1", "--store", "store", cwd=tmp_path)
    assert bad_name.returncode == 2 and "bad sweep name" in bad_name.stderr


def test_run_then_dry_run_then_analyze_from_the_command_line(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(tiny_spec("cli"))
    dry = in_process("run", str(spec), "--store", "store", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "12 cells, 0 done" in dry.stdout and "CPU-seconds" in dry.stdout
    assert not (tmp_path / "store").exists()  # a dry run writes nothing

    run = augworth("run", str(spec), "--store", "store", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(list((tmp_path / "store" / "cli" / "results").glob("*.parquet"))) == 12

    dry = in_process("run", str(spec), "--store", "store", "--dry-run", cwd=tmp_path)
    assert "12 done" in dry.stdout and "0 to run" in dry.stdout

    # resume runs exactly the cells that are not in the store, from the frozen spec alone
    results = tmp_path / "store" / "cli" / "results"
    lost = sorted(results.glob("*.parquet"))[:2]
    for path in lost:
        path.unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in results.glob("*.parquet")}
    spec.unlink()
    resumed = augworth("resume", "cli", "--store", "store", "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0 and "2 cells done now, 10 were already done" in resumed.stdout
    assert all(p.exists() for p in lost)
    assert all(kept[p.name] == p.stat().st_mtime_ns for p in results.glob("*.parquet") if p.name in kept)
    status = json.loads(in_process("status", "cli", "--store", "store", "--json", cwd=tmp_path).stdout)
    assert status["totals"] == {"cells": 12, "done": 12, "failed": 0, "running": 0, "missing": 0}
    spec.write_text(tiny_spec("cli"))

    changed = tmp_path / "changed.yaml"
    changed.write_text(tiny_spec("cli").replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    refused = in_process("run", str(changed), "--store", "store", "--dry-run", cwd=tmp_path)
    assert refused.returncode == 2 and "--extend" in refused.stderr
    extended = in_process("run", str(changed), "--store", "store", "--dry-run", "--extend", cwd=tmp_path)
    assert extended.returncode == 0 and "18 cells, 12 done" in extended.stdout
    shrunk = tmp_path / "shrunk.yaml"
    shrunk.write_text(tiny_spec("cli").replace("seeds: [0, 1]", "seeds: [0]"))
    refused = in_process("run", str(shrunk), "--store", "store", "--extend", cwd=tmp_path)
    assert refused.returncode == 2 and "superset" in refused.stderr

    analyze = augworth("analyze", "cli", "--store", "store", "--out", "figs", cwd=tmp_path)  # as a user runs it
    assert analyze.returncode == 0, analyze.stderr
    assert "exchange rates on 'test'" in analyze.stdout and "95% CI of v" in analyze.stdout
    # 12 steps leave the reference at chance (~0.13 at every size, 10 classes): no exchange rate, said as much
    assert "no fit: the reference does not improve with data" in analyze.stdout
    for name in ("scaling_test.png", "effective_samples_test.png", "scaling_corrupted.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 1000
    as_json = in_process("analyze", "cli", "--store", "store", "--eval-set", "test", "--json", cwd=tmp_path)
    rows = json.loads(as_json.stdout)
    assert {r["eval_set"] for r in rows} == {"test"} and {r["data_size"] for r in rows} == {40, 80, 160}
    treated = [r for r in rows if not r["is_reference"]]
    assert treated and all("v_ci_low" in r and "v_ci_high" in r for r in treated)  # the bootstrap is the default
    assert all(not r["fit_ok"] and r["fit_reason"].startswith("the reference does not improve") and
               r["effective_extra_samples"] is None for r in treated)
    compared = in_process("analyze", "cli", "--store", "store", "--eval-set", "test", "--compare", "crop(1)", "none",
                          "--json", cwd=tmp_path)
    pairs = json.loads(compared.stdout)
    assert [(r["first"], r["second"], r["data_size"], r["n_seeds"]) for r in pairs] == [
        ("crop(1)", "none", x, 2) for x in (40, 80, 160)]
    # 2 seeds: p ≥ 1/2; the reference does not improve, so crop(1)'s v does not exist and compare claims nothing
    assert all(r["v_second"] == 0 and r["p_sign_flip"] >= 0.5 for r in pairs)
    assert all(r["v_first_censored"] and r["v_diff_censored"] and r["p_family"] is None for r in pairs)
    bad = in_process("analyze", "cli", "--store", "store", "--eval-set", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "--eval-set 'nope'" in bad.stderr


def test_tables_print_whole_names_into_a_pipe(tmp_path):
    # stdout is a pipe and COLUMNS is unset, as in `augworth presets | cat` or a script reading the output
    env = {k: v for k, v in ENV.items() if k != "COLUMNS"}

    def piped(*args: str) -> str:
        result = subprocess.run([*CLI, *args], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "…" not in result.stdout, result.stdout  # rich marks a cut cell with an ellipsis
        return result.stdout

    store = Store(tmp_path / "s")
    label, long_policy = "cifar10c_severity3_benchmark_corruptions", "trivialaugment_crop_flip"
    grid = []
    for treatment in ({"augmentation": "none", "strength": None},
                      {"augmentation": long_policy, "strength": 0.75, "views": "fixed", "views_r": 16,
                       "invariance": "orbit_select"}):
        for size in (100, 200, 400, 800):
            for seed in (0, 1):
                cell = make_cell(data_size=size, seed=seed, **treatment)
                # the treatment is worth twice its size in real data (x + v = 3x): extrapolated at 400 and 800
                worth = size * (1 if treatment["augmentation"] == "none" else 3)
                rows = rows_for(cell, n_steps=1, eval_sets=(label,))
                for row in rows:
                    row["accuracy"] = 1 - (2 * worth**-0.5 + 0.02) + 0.002 * seed
                store.write_cell("pipe", cell.cell_key, rows)
                grid.append({"cell_key": cell.cell_key} | cell.to_dict())
    failed = make_cell(augmentation=long_policy, strength=0.75, data_size=1600, views="fixed", views_r=16,
                       invariance="orbit_select")
    grid.append({"cell_key": failed.cell_key} | failed.to_dict())
    store.write_failure("pipe", failed.cell_key, {"reason": "non-finite training loss (nan) at step 7 " * 4})
    store.write_grid("pipe", grid)
    store.write_spec("pipe", "name: pipe\n")

    presets = piped("presets")
    assert all(name in presets for name in ("paper_fig0_baselines", "paper_fig1_repetitions",
                                             "paper_stochasticity"))
    analyze = piped("analyze", "pipe", "--store", "s", "--out", "figs")
    assert f"exchange rates on '{label}'" in analyze
    assert f"{long_policy}(0.75)" in analyze and "extrapolated" in analyze
    status = piped("status", "pipe", "--store", "s")
    assert long_policy in status and "orbit_select" in status and failed.cell_key in status
    query = piped("query", "pipe", "SELECT DISTINCT augmentation, eval_set, cell_key, config_json FROM results",
                  "--store", "s")
    assert long_policy in query and label in query and failed.cell_key not in query
