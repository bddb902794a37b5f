"""Live progress of a sweep: cells done / running / failed, elapsed and ETA (rich)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text


class SweepProgress:
    def __init__(self, total: int, *, already_done: int = 0, console: Console | None = None,
                 enabled: bool = True, log_events: bool = False) -> None:
        self.total, self.already_done = total, already_done
        self.done = self.failed = self.running = 0
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.log_events = log_events
        self.started = time.monotonic()
        self._live: Live | None = None

    def render(self) -> Text:
        ran = self.done + self.failed
        finished = self.already_done + ran
        elapsed = time.monotonic() - self.started
        eta = elapsed / ran * (self.total - finished) if ran else None
        width = 20
        filled = int(width * finished / self.total) if self.total else width
        bar = "━" * filled + "╺" + " " * max(0, width - filled - 1) if filled < width else "━" * width
        text = Text()
        text.append(bar, style="green")
        text.append(f" {finished}/{self.total} cells ")
        text.append(f"done {self.done}", style="green")
        text.append(f" running {self.running}", style="cyan")
        text.append(f" failed {self.failed}", style="red" if self.failed else "dim")
        if self.already_done:
            text.append(f" skipped {self.already_done}", style="dim")
        text.append(f" {_fmt(elapsed)} eta {_fmt(eta) if eta is not None else '-'}")
        return text

    def __enter__(self) -> SweepProgress:
        if self.enabled:
            self._live = Live(self.render(), console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self.render())
            self._live.__exit__(*exc)
            if not self.console.is_terminal:
                self.console.print()

    def log(self, line: str) -> None:
        """Without the live display (batch jobs, logs), one line per cell event on stderr."""
        if not self.enabled and self.log_events:
            self.console.print(f"augworth: {line}", highlight=False, soft_wrap=True)

    def update(self) -> None:
        if self._live is not None:
            self._live.update(self.render())


def _fmt(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
