"""What every `augworth` command shares: the typer app, the consoles, the one-line errors (exit code 2) and the
store openers. The commands live in `cli.py` (sweeps: run, submit, resume, demo, presets) and `cli_results.py`
(a sweep's results: query, analyze, status, verify, compact, evaluate).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from augworth.results import Store, StoreError
from augworth.search_spaces import SpecError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Measure what data augmentations are worth: sweeps on Ray Tune, results in Parquet.")
# A pipe or a file gets COLUMNS or this width, not the 80 columns rich would fall back on: tables there are read
# by scripts and copied from, so no name may be cut to fit.
PIPE_WIDTH = 200


def _stdout_console() -> Console:
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


out = _stdout_console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

SweepArg = Annotated[str, typer.Argument(help="Sweep name.")]
StoreOpt = Annotated[str, typer.Option("--store", help="Results store root: a path or a pyarrow filesystem URI.")]
AddressOpt = Annotated[str | None, typer.Option("--address", help="Ray cluster to connect to (else RAY_ADDRESS, "
                                                "else a private local Ray).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
RetryFailedOpt = Annotated[bool, typer.Option("--retry-failed", help="Run failed cells again.")]
NoProgressOpt = Annotated[bool, typer.Option("--no-progress", help="No live display: one log line per cell event.")]
DEFAULT_STORE = "./augworth-store"


class BadInput(Exception):
    """Anything the user can fix: printed as one line, exit code 2."""


def fail(message: str, code: int = 2) -> typer.Exit:
    # every one-line error goes through here: a store URI or storage URL it quotes loses its secrets
    from rich.markup import escape

    from augworth.search_spaces.secrets import redact

    err.print(f"[bold red]augworth:[/] {escape(redact(message))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def user_errors(fn: F) -> F:
    """Bad input of any kind -> one line on stderr and exit code 2; nothing else is caught."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (SpecError, StoreError, BadInput) as exc:
            raise fail(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def open_store(root: str) -> Store:
    from augworth.search_spaces.secrets import redact

    try:
        return Store(root)
    except (OSError, ValueError) as exc:  # pyarrow: unknown scheme, bad URI
        raise BadInput(redact(f"--store {root!r}: {exc}")) from None


def open_sweep(root: str, sweep: str) -> Store:
    store = open_store(root)
    if not store.has_sweep(sweep):
        raise BadInput(f"no sweep {sweep!r} in store {store.shown!r} (sweeps there: "
                       f"{', '.join(store.sweeps()) or 'none'})")
    return store


# ----- tables ---------------------------------------------------------------------------------------

def results_place(store: Store, sweep: str) -> str:
    """Where a sweep's rows are, as the last line of a run or an analysis names them (secrets redacted)."""
    return store.location(sweep, "results") if store.local else f"{store.shown}/{sweep}/results"


def show(table: Table) -> None:
    """Print a table; where stdout is not a terminal, widen the page rather than cut a word or a `whole` column."""
    if not out.is_terminal:  # the narrowest the table gets without cutting, measured on an unbounded page
        out.width = max(out.width, Measurement.get(out, out.options.update_width(UNBOUNDED), table).minimum)
    out.print(table)


UNBOUNDED = 100_000


