"""Dropping many entries without stopping for them (``InMemoryLayer.drop_later``).

``invalidate_tags`` and ``invalidate_prefix`` may concern every entry an in-process layer
holds. Finding and removing them all at once would make the caller pay for each of them (a
cold cache line or three per entry), when the issue's promise is a cost that does not grow
with the number of keys. So the layer only records what is invalid (this ``PendingDrop``)
and then:

* every operation on a key checks that key first (a read of an invalidated key misses and
  removes it; a write replaces it);
* the call itself and every operation after it remove the invalidated entries among the
  next few slots (a sweep, ``SWEEP_STEP`` slots at a time), so the pending drop ends after
  a bounded number of operations (a small layer's at once) and reads stop paying for the
  check.

A key written after the invalidation is *rescued*: the rules made before the write no
longer apply to it. Each rule keeps its own rescued keys, so that a later rule (the same
tag invalidated again) applies to a key rescued from an earlier one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SWEEP_STEP = 32
"""Slots an operation sweeps while a drop is pending: a layer of ``n`` slots is clean
after ``n / SWEEP_STEP`` operations, each paying a few microseconds at most."""


class DropRule:
    """One invalidation: the keys of some sets, and the keys under some prefixes, as they
    were when it was made."""

    __slots__ = ("keysets", "prefixes", "rescued")

    def __init__(self, keysets: list[Any], prefixes: tuple[str, ...]) -> None:
        self.keysets = keysets
        self.prefixes = prefixes
        self.rescued: set[Any] = set()

    def covers(self, key: Any) -> bool:
        if key in self.rescued:
            return False
        for keys in self.keysets:
            if key in keys:
                return True
        return bool(self.prefixes) and isinstance(key, str) and key.startswith(self.prefixes)


class PendingDrop:
    """The invalidations an in-process layer has not finished removing."""

    __slots__ = ("rules",)

    def __init__(self) -> None:
        self.rules: list[DropRule] = []

    def add(self, keysets: Iterable[Any], prefixes: Iterable[str]) -> None:
        """Invalidate the keys in ``keysets`` (containers of keys) and under ``prefixes``."""
        prefixes = tuple(prefixes)
        for prefix in prefixes:
            if not isinstance(prefix, str):
                raise TypeError(f"a prefix must be a str, not {type(prefix).__name__}")
        self.rules.append(DropRule(list(keysets), prefixes))

    def covers(self, key: Any) -> bool:
        """Whether the entry held for ``key`` is invalid."""
        for rule in self.rules:
            if rule.covers(key):
                return True
        return False

    def rescue(self, key: Any) -> None:
        """``key`` was written after these invalidations: they do not apply to it."""
        for rule in self.rules:
            rule.rescued.add(key)


__all__ = ["SWEEP_STEP", "DropRule", "PendingDrop"]
