"""Named registries (methods, models, corruptions, device profiles, ...) with "did you mean" errors."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from cemasim.errors import ConfigError

T = TypeVar("T")


def did_you_mean(name: str, known: list[str]) -> str:
    """A suggestion suffix such as "; did you mean 'cema'?" or '' when nothing is close."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_name(what: str, name: Any, known: list[str]) -> str:
    """"<what> 'x' is unknown (did you mean 'y'?); known: a, b" -- the suggestion only when one is close."""
    close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{what} '{name}' is unknown{hint}; known: {', '.join(known)}"


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    help: str
    meta: dict[str, Any] = field(default_factory=dict)  # what a registry's users declare beside the object


class Registry(Generic[T]):
    """A name -> object table; `register` rejects duplicates, `get` suggests on typos."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, help: str = "", **meta: Any) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name, obj, help, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, help: str = "", **meta: Any) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = Entry(name, obj, help, meta)

    def get(self, name: str) -> T:
        try:
            return self._entries[name].obj
        except KeyError:
            raise ConfigError(self.unknown(name), source=self.kind) from None

    def unknown(self, name: Any) -> str:
        return unknown_name(self.kind, name, self.names())

    def meta(self, name: str) -> dict[str, Any]:
        """What was declared with the entry (e.g. a method's deployments); {} for unknown names."""
        entry = self._entries.get(name)
        return entry.meta if entry else {}

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
