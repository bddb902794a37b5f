"""Sweeps that survive: a driver whose Ray stops under it, drivers killed with SIGKILL, each resumed (one from
another PID namespace); one driver per sweep, sweeps side by side, run again and extended through their frozen spec.

Each driver is a real `augworth` process in its own process group (killed whole, Ray's processes with it).
Synchronisation is on the driver's own log lines (one per cell event with --no-progress), never on sleeps.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import subprocess
from pathlib import Path

import pandas as pd
import torch
from conftest import CLI, NAMESPACE, ROOT, unshare_works

from augworth.orchestrator.lock import SweepLock
from augworth.results import Store, read_results
from augworth.search_spaces import Cell

SPEC = """\
name: {name}
dataset: {{name: digits}}
model: {{name: small_cnn, width: 4}}
augmentations: [{{policy: none}}, {{policy: crop, strength: 1}}]
data_sizes: [40, 80]
seeds: [0, 1]
budget: {{steps: 96, batch_size: 16, eval_every: 48}}
optimizer: {{lr: 0.05, warmup_steps: 8}}
eval_sets: [test, {{name: corrupted, label: c_nb, options: {{corruptions: [noise, blur]}}}}]
execution: {{cells_per_trial: 1, checkpoint_every: 16}}
"""
# the eval set's options hold a list, which the frozen spec once compared with a tuple: every resume, re-run and
# --extend of such a sweep was refused

ENV = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(ROOT)}
# the same grid, quick: for the tests of drivers side by side, where no cell is interrupted
QUICK_SPEC = SPEC.replace("steps: 96, batch_size: 16, eval_every: 48", "steps: 24, batch_size: 16, eval_every: 24") \
    .replace("cells_per_trial: 1, checkpoint_every: 16", "cells_per_trial: 4")


def driver(*args: str, cwd) -> subprocess.Popen:
    return subprocess.Popen([*CLI, *args, "--store", "store", "--no-progress"],
                            cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def read_until(proc: subprocess.Popen, pattern: str, count: int = 1) -> list[str]:
    """The driver's stderr lines up to the `count`-th matching `pattern` (blocks on the pipe)."""
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if sum(bool(re.search(pattern, seen)) for seen in lines) >= count:
            return lines
    raise AssertionError(f"driver ended before {count} x {pattern!r}:\n{''.join(lines)}")


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL to the driver's process group, then wait until every process of it has ended: the driver under its
    supervisor holds the sweep's lock until its own exit, which may come after the supervisor's."""
    group = group_members(proc.pid)
    waiters = []
    for pid in group:
        with contextlib.suppress(ProcessLookupError):  # already gone
            waiters.append(os.pidfd_open(pid))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for fd in waiters:
        select.select([fd], [], [], 60)  # readable once the process has exited (its files, its lock, closed)
        os.close(fd)


def group_members(pgid: int) -> list[int]:
    """Pids whose process group is `pgid` (field 5 of /proc/PID/stat, after the command's closing paren)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            out.append(int(stat.parent.name))
    return out


def mtimes(folder) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}


def test_stopped_then_killed_then_resumed_every_cell_exactly_once_and_checkpoints_continue(tmp_path):
    from augworth.orchestrator.supervise import RAY_LOST, ray_processes

    (tmp_path / "spec.yaml").write_text(SPEC.format(name="crash"))
    results = tmp_path / "store" / "crash" / "results"

    first = driver("run", "spec.yaml", cwd=tmp_path)
    read_until(first, r"cell \w+ done", count=2)
    # point 1, between cells: the driver's local Ray stops under it (its GCS and raylet get SIGTERM, as from `ray
    # stop`, here to this driver's Ray only). It says so in one line, exit 4, no traceback.
    (child,) = children(first.pid)  # the driver, under the supervisor that `augworth run` is
    gcs_and_raylet = ray_processes(child)
    assert len(gcs_and_raylet) == 2
    for pid in gcs_and_raylet:
        os.kill(pid, signal.SIGTERM)
    _, rest = first.communicate(timeout=120)
    assert first.returncode == RAY_LOST, rest
    assert "Traceback" not in rest and rest.strip().splitlines()[-1].startswith("augworth: the local Ray stopped")
    assert "`augworth resume crash`" in rest
    after_first = mtimes(results)
    assert 2 <= len(after_first) < 8

    second = driver("resume", "crash", cwd=tmp_path)
    lines = read_until(second, "checkpoint at step")
    kill(second)  # point 2: in the middle of a cell that has a checkpoint
    checkpointed = lines[-1].split("cell ", 1)[1].split()[0]
    after_second = mtimes(results)
    assert {k: after_second[k] for k in after_first} == after_first  # finished cells were not re-run
    if f"{checkpointed}.parquet" not in after_second:
        assert (tmp_path / "store" / "crash" / "checkpoints" / f"{checkpointed}.pt").exists()

    # the third driver in a PID namespace of its own, where it can be pid 1 (a container's driver, same host
    # name): the killed driver's sweep is free to it all the same
    third = subprocess.run([*(NAMESPACE if unshare_works() else []), *CLI,
                            "resume", "crash", "--store", "store", "--no-progress"], cwd=tmp_path, env=ENV,
                           capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    final = mtimes(results)
    assert len(final) == 8
    assert {k: final[k] for k in after_second} == after_second
    log = "".join(lines) + third.stderr
    resumed = {line.split("cell ", 1)[1].split()[0] for line in log.splitlines() if "resumed from" in line}
    assert resumed  # at least one cell continued from a checkpoint rather than starting over

    store = Store(tmp_path / "store")
    frame = read_results(store, "crash")
    assert (frame.groupby("cell_key").size() == 4).all()  # 2 eval sets x steps 48, 96: one copy of each row
    assert not list((tmp_path / "store" / "crash" / "checkpoints").glob("*.pt"))  # cleared once written

    # every cell that continued from a checkpoint ends exactly where an uninterrupted run ends
    from augworth.search_spaces import parse_spec
    from augworth.trainables.datasets import load_dataset
    from augworth.trainables.train import train_cell

    torch.set_num_threads(1)  # as in the workers
    grid = {row["cell_key"]: row for row in store.read_grid("crash").to_pylist()}
    for key in resumed:
        cell = Cell.from_dict(grid[key])
        reference = train_cell(cell, load_dataset("digits"), parse_spec(SPEC.format(name="crash")).eval_requests()
                               ).evaluations
        stored = frame[(frame["cell_key"] == key) & frame["final"]].set_index("eval_set")["accuracy"]
        assert {e.eval_set: e.accuracy for e in reference if e.final} == stored.to_dict()


def test_two_sweeps_in_one_store_root_at_once_keep_to_themselves_and_a_second_driver_of_one_exits_2(tmp_path):
    for name in ("left", "right"):
        (tmp_path / f"{name}.yaml").write_text(QUICK_SPEC.format(name=name))
    drivers = [driver("run", f"{name}.yaml", cwd=tmp_path) for name in ("left", "right")]
    read_until(drivers[0], "cells to run")  # the first driver holds left's lock from here on
    (holder,) = children(drivers[0].pid)  # the driver, under the supervisor that `augworth run` is
    os.kill(holder, signal.SIGSTOP)  # held where it is, lock and all, until the second has been refused: on a
    try:  # busy machine its 8 quick cells were once done before the second driver had started
        second = subprocess.run([*CLI, "run", "left.yaml", "--store", "store"],
                                cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    finally:
        os.kill(holder, signal.SIGCONT)
    assert second.returncode == 2 and f"is being run by pid {holder}" in second.stderr, second.stderr
    assert [d.wait(timeout=400) for d in drivers] == [0, 0]  # the refused driver took nothing from the holder
    store = Store(tmp_path / "store")
    for name in ("left", "right"):
        frame: pd.DataFrame = read_results(store, name)
        assert set(frame["sweep"]) == {name} and frame["cell_key"].nunique() == 8

    # the same spec file again: the same sweep, nothing to train; then --extend with one more seed trains only the
    # new cells (both through the frozen spec, whose eval set holds a list)
    def augworth(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*CLI, *args, "--store", "store", "--no-progress"],
                              cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)

    done = mtimes(tmp_path / "store" / "left" / "results")
    again = augworth("run", "left.yaml")
    assert again.returncode == 0 and "0 cells done now, 8 were already done" in again.stdout, again.stderr
    (tmp_path / "more.yaml").write_text(QUICK_SPEC.format(name="left").replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    extended = augworth("run", "more.yaml", "--extend")
    assert extended.returncode == 0 and "4 cells done now, 8 were already done" in extended.stdout, extended.stderr
    final = mtimes(tmp_path / "store" / "left" / "results")
    assert len(final) == 12 and {k: final[k] for k in done} == done  # only the new seed's cells trained


def test_ctrl_c_stops_cleanly_and_resume_finishes_the_rest(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC.format(name="sigint"))
    first = driver("run", "spec.yaml", cwd=tmp_path)
    read_until(first, r"cell \w+ done")
    os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the foreground group
    code = first.wait(timeout=120)
    results = tmp_path / "store" / "sigint" / "results"
    kept = mtimes(results)
    assert code != 0 and len(kept) >= 1
    assert SweepLock(Store(tmp_path / "store"), "sigint").dead_holder() is None  # released, not left behind
    resumed = subprocess.run([*CLI, "resume", "sigint", "--store", "store",
                              "--no-progress"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = mtimes(results)
    assert len(final) == 8 and {k: final[k] for k in kept} == kept


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]
