"""One registry per kind of component (data sets, augmentations, models, eval sets).

timm's pattern: a plain dict keyed by a lowercase name, filled by a decorator, read by a factory
whose error lists the valid names. Adding a component is one decorated function; no central table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class UnknownNameError(KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[F]):
    name: str
    factory: F
    meta: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[F]):
    """`meta`: the metadata keys an entry may carry (`doc` always may); `required`: those it must carry. A
    misspelt key is an error at registration, not a default silently taken later."""

    def __init__(self, kind: str, *, meta: Iterable[str] = (), required: Iterable[str] = ()) -> None:
        self.kind = kind
        self.required = frozenset(required)
        self.meta_keys = frozenset(meta) | self.required | {"doc"}
        self._entries: dict[str, Entry[F]] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[F], F]:
        """Decorator: register `fn` under `name` (default: the function's name) with metadata."""
        unknown, missing = set(meta) - self.meta_keys, self.required - set(meta)
        if unknown or missing:
            raise TypeError(f"{self.kind} {name!r}: "
                            + (f"unknown metadata {sorted(unknown)} " if unknown else "")
                            + (f"missing metadata {sorted(missing)} " if missing else "")
                            + f"(keys: {', '.join(sorted(self.meta_keys))})")

        def decorate(fn: F) -> F:
            key = (name or fn.__name__).lower()
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[key] = Entry(key, fn, dict(meta))
            return fn

        return decorate

    def get(self, name: str) -> Entry[F]:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r} (valid: {', '.join(self.names())})"
            ) from None

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Call the factory; `None` kwargs are dropped so unset options never override defaults."""
        return self.get(name).factory(**{k: v for k, v in kwargs.items() if v is not None})

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
