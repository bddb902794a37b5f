"""Benchmarks run at a tiny size (never timed here: figures come from the full runs, see README)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("name", ["orchestration", "driver_memory"])
def test_benchmark_runs_at_smoke_size(name, capsys):
    import importlib

    rows = importlib.import_module(f"bench.{name}").main(["--smoke"])
    out = capsys.readouterr().out
    assert rows and "ratio" in out
