"""The base of every spec model: strict pydantic, and an error that knows its key path."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # allow_inf_nan=False: `lr: .inf` is an error here, not a crash when the cell key is computed
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class LocatedError(ValueError):
    """A check across fields that knows which key path is at fault (pydantic puts it at the top)."""

    def __init__(self, message: str, loc: tuple[Any, ...]) -> None:
        super().__init__(message)
        self.loc = loc
