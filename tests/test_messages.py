"""The messages between trials and the driver: every type survives Tune's result dict, and the one pump hands
every message over before it raises a worker's error."""

from __future__ import annotations

import threading

import pytest
from conftest import ROOT  # noqa: F401  (the checkout first on sys.path)
from factories import make_cell

from augworth.trainables.messages import (
    MESSAGES,
    CellCheckpointed,
    CellFailure,
    CellPruned,
    CellResumed,
    CellRows,
    CellSkipped,
    CellStarted,
    SearchTrialEnd,
    decode,
    stream,
)

EXAMPLES = [CellStarted("k1", "node-a"), CellStarted("k1", None, alongside=True), CellSkipped("k2"),
            CellCheckpointed("k3", 40), CellResumed("k3", 40), CellRows("k4", [{"accuracy": 0.5}], 2),
            CellFailure("k5", {"reason": "boom", "attempts": 3}), CellPruned("k6", 10),
            SearchTrialEnd("s/crop/n60", 3, None), SearchTrialEnd("s/crop/n60", 4, 20)]


def test_every_message_type_survives_a_tune_result_dict():
    assert {type(m) for m in EXAMPLES} == set(MESSAGES.values())
    for message in EXAMPLES:
        result = message.wire() | {"trial_id": "abc", "time_this_iter_s": 0.1, "training_iteration": 7}  # Tune's own
        assert decode(result) == message
    assert decode({"trial_id": "abc", "done": True}) is None  # Tune's own results carry no message


def test_a_message_reads_as_the_dict_the_driver_and_logs_always_read():
    rows = CellRows("k4", [{"accuracy": 0.5}], 2)
    assert rows["cell_rows"] == [{"accuracy": 0.5}] and rows.get("attempts") == 2 and "cell_failure" not in rows
    assert CellResumed("k3", 40)["cell_resumed"] == 40 and CellStarted("k1")["cell_started"] is True
    end = SearchTrialEnd("s", 3, 20).wire()
    assert end["search_trial_end"] is True and end["search_trial"] == 3 and end["search_pruned"] == 20


def test_one_failure_record_for_every_way_a_cell_fails():
    cell = make_cell()
    failure = CellFailure.of(cell, "boom", attempts=2, traceback="tb", errors=["attempt 1: x", "attempt 2: boom"])
    assert failure.cell_key == cell.cell_key and failure.record["config"] == cell.to_dict()
    assert set(failure.record) == {"reason", "traceback", "attempts", "config", "host", "errors"}
    assert set(CellFailure.of(cell, "refused").record) == {"reason", "traceback", "attempts", "config", "host"}


def test_the_pump_hands_over_every_message_then_raises_the_first_workers_error():
    reported: list[dict] = []
    release = threading.Event()

    def fails(send):
        send(CellStarted("a"))
        release.wait()  # the other worker's messages come after this one raised
        raise RuntimeError("worker a")

    def talks(send):
        for step in (1, 2, 3):
            send(CellCheckpointed("b", step))
        release.set()

    with pytest.raises(RuntimeError, match="worker a"):
        stream([fails, talks], reported.append)
    assert [decode(r) for r in reported].count(CellStarted("a")) == 1
    assert [r["cell_checkpoint"] for r in reported if "cell_checkpoint" in r] == [1, 2, 3]
    reported.clear()
    stream([talks], reported.append)  # no error: every message, nothing raised
    assert len(reported) == 3
