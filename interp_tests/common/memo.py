"""A cache that also remembers failures, so a broken model or SAE fails every user at once. No pytest here."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .errors import InterpTestsError

V = TypeVar("V")


@dataclass
class Memo(Generic[V]):
    """`get(key, build)` builds a value once per key; an `InterpTestsError` from `build` is kept and re-raised.

    The kept error holds no traceback, and each user gets a copy: re-raising one object would chain every
    caller's frames onto it, and with them their locals (a sweep's SAEs, which then never leave memory)."""

    values: dict[Hashable, V | InterpTestsError] = field(default_factory=dict)

    def get(self, key: Hashable, build: Callable[[], V]) -> V:
        if key not in self.values:
            try:
                self.values[key] = build()
            except InterpTestsError as exc:
                exc.__context__ = exc.__cause__ = None
                self.values[key] = exc.with_traceback(None)
        got = self.values[key]
        if isinstance(got, InterpTestsError):
            raise fresh_copy(got) from None
        return got

    def __contains__(self, key: Hashable) -> bool:
        return key in self.values

    def items(self) -> list[tuple[Hashable, V]]:
        """(key, value) of the values built so far (failures left out)."""
        return [(k, v) for k, v in self.values.items() if not isinstance(v, InterpTestsError)]

    def built(self) -> list[V]:
        """The values built so far (failures left out)."""
        return [v for v in self.values.values() if not isinstance(v, InterpTestsError)]


def fresh_copy(exc: InterpTestsError) -> InterpTestsError:
    """The same error (class, message, attributes) as a new object without a traceback; its __init__ is not
    called again (some take other arguments than their message)."""
    fresh = type(exc).__new__(type(exc), *exc.args)
    fresh.__dict__.update(exc.__dict__)
    return fresh
