"""Benchmarks run at a tiny size (never timed here: figures come from the full runs, see README)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["orchestration", "driver_memory"])
def test_benchmark_runs_at_smoke_size(name, capsys):
    import importlib

    rows = importlib.import_module(f"bench.{name}").main(["--smoke"])
    out = capsys.readouterr().out
    assert rows and "ratio" in out


def test_the_gpu_benchmark_runs_its_parts_at_smoke_size_on_the_cpu(capsys):
    from bench.gpu import main

    rows = main(["--smoke"])
    parts = [(r["part"], r["path"]) for r in rows]
    assert parts[:4] == [("step", "eager"), ("step", "graph"), ("profile", "eager"), ("profile", "graph")]
    assert [(r["cells_per_gpu"], r["ratio"] == 1.0) for r in rows if r["part"] == "packing"] == [(1, True), (2, False)]
    assert all(r["steps_per_s"] > 0 for r in rows if "steps_per_s" in r)
    accuracy = [r for r in rows if r["part"] == "accuracy"]
    assert [r["seeds"] for r in accuracy[:2]] == [3, 3] and accuracy[2]["identical"] is True
    assert "kernels_per_step" in capsys.readouterr().out


def test_the_interval_benchmark_runs_at_smoke_size(capsys):
    from bench.intervals import SCENARIOS, main

    rows = main(["--smoke"])
    assert [r["scenario"] for r in rows] == list(SCENARIOS) and "coverage" in capsys.readouterr().out
    assert all(0 <= r["coverage"] <= 1 and r["width"] >= r["plain_width"] for r in rows)


def test_the_questions_benchmark_runs_at_smoke_size(capsys):
    from bench.questions import main

    rows = main(["--smoke"])
    assert len(rows) == 8 and all(0.0 <= r["coverage"] <= 1.0 for r in rows)
    assert "coverage" in capsys.readouterr().out
    verdicts = main(["--smoke", "--verdicts"])
    assert [r["truth"] for r in verdicts] == ["no asymptote", "saturating"] and verdicts[0]["truly_unbounded"] == 0
    assert "bounds hold" in capsys.readouterr().out


def test_the_search_benchmark_runs_at_smoke_size(capsys):
    from bench.search import SAMPLERS, SIZES, main

    rows = main(["--smoke"])
    assert [(r["sampler"], r["size"]) for r in rows] == [(s, n) for s in SAMPLERS for n in SIZES]
    assert all(0 < r["ratio"] <= r["worst"] and r["found"] == 2 for r in rows)  # the smooth surface is found
    assert "ratio" in capsys.readouterr().out


def test_the_selection_benchmark_runs_at_smoke_size(capsys):
    from bench.selection import TRIALS, main

    rows = main(["--smoke"])
    assert [r["trials"] for r in rows] == list(TRIALS) and all(0.0 <= r["acc_confirmed"] <= 1.0 for r in rows)
    assert "optimism" in capsys.readouterr().out


def test_the_design_replay_on_real_cells_runs_at_smoke_size(capsys):
    from bench.design_digits import main

    frame = main(["--orderings", "2", "--policies", "all"])  # every visible cell: no replay loop, a few seconds
    assert frame is not None and len(frame) == 2 and frame["cells"].eq(360).all()
    assert frame["consistent"].between(0, 1).all() and frame["seconds"].gt(0).all()
    assert "consistent" in capsys.readouterr().out
