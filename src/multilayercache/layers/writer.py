"""A persistence writer as a cache's last layer: ``WriterLayer`` (sync) and
``AsyncWriterLayer`` (asyncio) hand the cache's writes to a function of yours, e.g. a bulk
upsert into a database, so that "L1 writes to L2, L2 writes to persistence"::

    def upsert(rows: dict[str, User]) -> None: ...      # one call per batch
    def remove(keys: list[str]) -> None: ...

    cache = MultilayerCache(
        [InMemoryLayer(max_size=10_000), RedisLayer(url), WriterLayer(upsert, remove)],
        [LayerPolicy(ttl=30), LayerPolicy(ttl=600, write=WriteBehind()),
         LayerPolicy(write=WriteBehind(batch_size=1000, max_delay=0.5))],
    )

With ``WriteBehind`` the writer gets batches from a background worker, is retried while it
fails with a transient error (a ``ConnectionError`` / ``TimeoutError`` anywhere in the
cause chain, or whatever ``WriteBehind(retry=RetryPolicy(retry_on=...))`` says), and what
fails for good goes to the dead-letter file with the value as JSON (or its repr). With
``WriteThrough`` (the default) ``set()`` calls the writer itself.

A writer layer never answers reads (the loader of ``get_or_load`` is the read side of the
database): ``get`` misses, ``get_many`` finds nothing. A read of a key whose write is still
queued finds the queued value, as for any write-behind layer.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NamedTuple

from .._forking import register_after_fork
from ..core.freshness import Entry, Lifetime
from ..core.stats import LayerStats
from ..core.ttl import TTL
from ..core.writequeue import DeadWrite
from ..deadletter import DeadLetterRecord

Writer = Callable[[dict[Any, Any]], Any]
Remover = Callable[[list[Any]], Any]


class PersistWrite(NamedTuple):
    """A write queued for a writer layer: the value itself (nothing to encode), or a
    delete."""

    key: Any
    value: Any
    deleted: bool
    size: int


class _WriterBase:
    """What both writer layers share: the queue payloads, the counters, the stats."""

    in_process = False

    def __init__(self, write: Any, delete: Any, name: str) -> None:
        if not callable(write):
            raise TypeError(f"write must be callable (write(items: dict)), got {write!r}")
        if delete is not None and not callable(delete):
            raise TypeError(f"delete must be callable (delete(keys: list)) or None, got {delete!r}")
        self.name = name
        self._write = write
        self._delete = delete
        self._lock = threading.Lock()
        self.writes = 0
        """Items handed to the writer so far."""
        self.deletes = 0
        """Keys handed to the delete function so far."""
        register_after_fork(self)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # in a forked child: a thread of the parent may hold it

    def encode_write(
        self,
        key: Any,
        value: Any,
        lifetime: Lifetime | None = None,
        load_seconds: float = 0.0,
        value_type: Any = None,
    ) -> PersistWrite:
        """The queued form of a write: the value as is. ``size``: a shallow estimate
        (``sys.getsizeof``), which is what the queue's ``max_bytes`` counts."""
        return PersistWrite(key, value, False, sys.getsizeof(value))

    def encode_delete(self, key: Any) -> PersistWrite:
        if self._delete is None:
            raise TypeError(f"{self.name}: this writer layer was given no delete function")
        return PersistWrite(key, None, True, 0)

    def pending_entry(self, key: Any, write: PersistWrite, value_type: Any = None) -> Entry | None:
        """A queued write's value, as a read finds it (fresh: the writer keeps no TTL)."""
        return None if write.deleted else Entry(write.value, math.inf, math.inf)

    def dead_letter_record(self, dead: DeadWrite) -> DeadLetterRecord:
        return DeadLetterRecord.of(dead, self.name, value=dead.payload.value)

    def _split(self, writes: list[PersistWrite]) -> tuple[dict[Any, Any], list[Any]]:
        """One batch as one ``write`` call and one ``delete`` call (a batch holds each key
        once, so the two never disagree)."""
        items = {write.key: write.value for write in writes if not write.deleted}
        gone = [write.key for write in writes if write.deleted]
        return items, gone

    def _count(self, items: int, gone: int) -> None:
        with self._lock:
            self.writes += items
            self.deletes += gone

    def stats(self) -> LayerStats:
        # A writer holds nothing the cache can read: no size, no hits.
        return LayerStats(name=self.name, hits=0, misses=0, size=None)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self._write, '__name__', self._write)!r})"


class WriterLayer(_WriterBase):
    """The sync persistence writer layer: ``write(items: dict)`` stores a batch,
    ``delete(keys: list)`` removes keys (optional: without it, deletes raise
    ``TypeError``)."""

    def __init__(
        self, write: Writer, delete: Remover | None = None, *, name: str = "writer"
    ) -> None:
        super().__init__(write, delete, name)

    def get(self, key: Any, default: Any = None) -> Any:
        return default

    def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        return {}

    def set(self, key: Any, value: Any, ttl: TTL | None = None) -> None:
        self._write({key: value})
        self._count(1, 0)

    def set_many(self, mapping: Mapping[Any, Any], ttl: TTL | None = None) -> None:
        if mapping:
            self._write(dict(mapping))
            self._count(len(mapping), 0)

    def delete(self, key: Any) -> bool:
        """Hand the key to ``delete``; False: whether the store had it is not known."""
        self.delete_many([key])
        return False

    def delete_many(self, keys: Iterable[Any]) -> None:
        keys = list(keys)
        if self._delete is None:
            raise TypeError(f"{self.name}: this writer layer was given no delete function")
        if keys:
            self._delete(keys)
            self._count(0, len(keys))

    def write_packed(self, writes: list[PersistWrite], late: bool = False) -> None:
        """Send one write-behind batch: one ``write`` call, one ``delete`` call. (``late``:
        a store of the user's own cannot be told to refuse older values; ignored.)"""
        items, gone = self._split(writes)
        if items:
            self._write(items)
        if gone:
            assert self._delete is not None  # encode_delete refused it otherwise
            self._delete(gone)
        self._count(len(items), len(gone))


class AsyncWriterLayer(_WriterBase):
    """The asyncio persistence writer layer: ``async def write(items: dict)``,
    ``async def delete(keys: list)``."""

    def __init__(
        self,
        write: Callable[[dict[Any, Any]], Awaitable[Any]],
        delete: Callable[[list[Any]], Awaitable[Any]] | None = None,
        *,
        name: str = "writer",
    ) -> None:
        super().__init__(write, delete, name)

    async def get(self, key: Any, default: Any = None) -> Any:
        return default

    async def get_many(self, keys: Iterable[Any]) -> dict[Any, Any]:
        return {}

    async def set(self, key: Any, value: Any, ttl: TTL | None = None) -> None:
        await self._write({key: value})
        self._count(1, 0)

    async def set_many(self, mapping: Mapping[Any, Any], ttl: TTL | None = None) -> None:
        if mapping:
            await self._write(dict(mapping))
            self._count(len(mapping), 0)

    async def delete(self, key: Any) -> bool:
        """Hand the key to ``delete``; False: whether the store had it is not known."""
        await self.delete_many([key])
        return False

    async def delete_many(self, keys: Iterable[Any]) -> None:
        keys = list(keys)
        if self._delete is None:
            raise TypeError(f"{self.name}: this writer layer was given no delete function")
        if keys:
            await self._delete(keys)
            self._count(0, len(keys))

    async def write_packed(self, writes: list[PersistWrite], late: bool = False) -> None:
        """Send one write-behind batch: one ``write`` call, one ``delete`` call (``late``
        ignored, as by ``WriterLayer``)."""
        items, gone = self._split(writes)
        if items:
            await self._write(items)
        if gone:
            assert self._delete is not None
            await self._delete(gone)
        self._count(len(items), len(gone))


__all__ = ["AsyncWriterLayer", "PersistWrite", "WriterLayer"]
