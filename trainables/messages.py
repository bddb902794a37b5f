"""What a trial tells the driver, as small frozen dataclasses, and the one pump that streams them to Tune.

A trainable builds messages (a cell started, its rows, its failure, ...); Tune carries each as a result dict
(`wire()`: plain keys and values, the same keys `tune.report` has always carried); the driver's callback turns
the dict back into its message (`decode`) and dispatches on the type. A message also reads as its wire dict
(a `Mapping`), so code that printed or inspected the dicts reads the messages unchanged.

The pump: `tune.report` waits for the driver to take a result before it returns, so cells train in background
threads (torch releases the GIL in its kernels) that put messages on a queue, while the trainable's own thread
hands them to Tune (`stream`); no cell waits on the driver.
"""

from __future__ import annotations

import dataclasses
import queue
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from augworth.search_spaces.cells import Cell

KIND = "augworth_message"  # the wire key that names a message's type


class Message(Mapping[str, Any]):
    """A message's wire form is a dict of its fields under their wire names (`WIRE`: field -> key; a field not
    named keeps its name) plus `FLAG` (a key set to True that older readers looked for) and its kind."""

    WIRE: ClassVar[Mapping[str, str]] = {}
    FLAG: ClassVar[str | None] = None

    def wire(self) -> dict[str, Any]:
        out = {self.WIRE.get(f.name, f.name): getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        if self.FLAG:
            out[self.FLAG] = True
        return out | {KIND: type(self).__name__}

    def __getitem__(self, key: str) -> Any:
        return self.wire()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.wire())

    def __len__(self) -> int:
        return len(self.wire())


@dataclass(frozen=True, eq=True)
class CellStarted(Message):
    cell_key: str
    node: str | None = None
    alongside: bool = False  # a search trial trains its seeds at once; a chunk one cell after another
    FLAG = "cell_started"


@dataclass(frozen=True, eq=True)
class CellSkipped(Message):
    """Written before its trial was restarted: not trained again."""

    cell_key: str
    FLAG = "cell_skipped"


@dataclass(frozen=True, eq=True)
class CellCheckpointed(Message):
    cell_key: str
    step: int
    WIRE = {"step": "cell_checkpoint"}


@dataclass(frozen=True, eq=True)
class CellResumed(Message):
    cell_key: str
    step: int
    WIRE = {"step": "cell_resumed"}


@dataclass(frozen=True, eq=True)
class CellRows(Message):
    """The cell's rows, complete as `results.rows.cell_rows` built them: the driver writes them as they are."""

    cell_key: str
    rows: list[dict[str, Any]]
    attempts: int
    WIRE = {"rows": "cell_rows"}


@dataclass(frozen=True, eq=True)
class CellFailure(Message):
    """A cell that failed after its retries: `record` is what `failures/<cell_key>.json` holds."""

    cell_key: str
    record: dict[str, Any]
    WIRE = {"record": "cell_failure"}

    @classmethod
    def of(cls, cell: Cell, reason: str, *, attempts: int = 0, traceback: str = "",
           errors: Sequence[str] | None = None) -> CellFailure:
        """The one failure record: reason, traceback, attempts, the cell's config and the host."""
        record = {"reason": reason, "traceback": traceback, "attempts": attempts, "config": cell.to_dict(),
                  "host": socket.gethostname()}
        if errors is not None:
            record["errors"] = list(errors)
        return cls(cell.cell_key, record)


@dataclass(frozen=True, eq=True)
class CellPruned(Message):
    """Stopped by the search's pruner: the study records it; nothing goes to results/."""

    cell_key: str
    step: int
    WIRE = {"step": "cell_pruned"}


@dataclass(frozen=True, eq=True)
class SearchTrialEnd(Message):
    """A search trial's last report: its study, number and the step the pruner stopped it at (None: not)."""

    study: str
    number: int
    pruned_at: int | None = None
    WIRE = {"study": "search_study", "number": "search_trial", "pruned_at": "search_pruned"}
    FLAG = "search_trial_end"


MESSAGES: dict[str, type[Message]] = {cls.__name__: cls for cls in (
    CellStarted, CellSkipped, CellCheckpointed, CellResumed, CellRows, CellFailure, CellPruned, SearchTrialEnd)}


def decode(result: Mapping[str, Any]) -> Message | None:
    """The message a Tune result dict carries (Tune adds keys of its own, which are ignored); None if none."""
    cls = MESSAGES.get(result.get(KIND))  # type: ignore[arg-type]
    if cls is None:
        return None
    return cls(**{f.name: result[cls.WIRE.get(f.name, f.name)] for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                  if cls.WIRE.get(f.name, f.name) in result})


Send = Callable[[Message], None]


def stream(workers: Sequence[Callable[[Send], None]], report: Callable[[dict[str, Any]], Any],
           names: Sequence[str] | None = None) -> None:
    """Run each worker in a thread of its own, each given `send`; hand every message it sends to `report` (Tune's)
    from this thread, as it comes; once all have ended, raise the first exception one of them raised (the
    trial's own error: a cell's failure is a message, not an exception)."""
    messages: queue.Queue[Message | BaseException | None] = queue.Queue()

    def run(worker: Callable[[Send], None]) -> None:
        try:
            worker(messages.put)
        except BaseException as exc:  # noqa: BLE001  (handed to the trial's thread, which raises it)
            messages.put(exc)

    threads = [threading.Thread(target=run, args=(w,), daemon=True,
                                name=names[i] if names else f"augworth-worker-{i}") for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()

    def close() -> None:
        for thread in threads:
            thread.join()
        messages.put(None)

    threading.Thread(target=close, name="augworth-pump-close", daemon=True).start()
    error: BaseException | None = None
    while (item := messages.get()) is not None:
        if isinstance(item, BaseException):
            error = error or item
            continue
        report(item.wire())
    if error is not None:
        raise error
