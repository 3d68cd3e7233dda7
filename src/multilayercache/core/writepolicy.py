"""Write policies (``LayerPolicy(write=...)``): ``WriteThrough()`` writes a layer before
``set()`` returns; ``WriteBehind(...)`` acknowledges once the faster layers hold the value
and queues the write for this one (``writequeue.py``), with the bounds, batching, retries and
dead letter set here. Plus the errors a write-behind ``set()`` may raise."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from .backoff import TRANSIENT, RetryPolicy
from .errors import QueueFull, WriteQueueClosed, retryable  # (the errors also importable here)

Op = Literal["set", "delete"]
"""What a queued write does to its key."""
WhenFull = Literal["block", "raise"]

DEFAULT_DEAD_LETTER_PATH = "multilayercache-dead-letters.jsonl"
"""The default dead-letter file, relative to the working directory when the cache starts."""


def write_transient(error: BaseException) -> bool:
    """The default ``retry_on`` of write-behind: a retryable ``LayerError`` (an unreachable
    or timed-out backend, a layer's open breaker, or one that answered "not now": a
    read-only replica, ``maxmemory`` reached) or a socket ``ConnectionError`` /
    ``TimeoutError`` anywhere in the cause chain (a persistence writer's driver error)."""
    return retryable(error) or TRANSIENT(error)


DEFAULT_WRITE_RETRY = RetryPolicy(
    attempts=None, base=0.05, cap=1.0, budget=60.0, retry_on=write_transient
)
"""Retries of a write-behind batch (see ``WriteBehind.retry``)."""


@runtime_checkable
class DeadLetterSink(Protocol):
    """Where dead writes go: ``multilayercache.deadletter.DeadLetter`` (a JSONL file and/or a
    callback) or anything with the same ``append``."""

    def append(self, records: Any) -> None: ...


@dataclass(frozen=True)
class WriteThrough:
    """Write the layer before ``set()`` returns (the default policy)."""


@dataclass(frozen=True)
class WriteBehind:
    """Acknowledge a write once the faster layers hold it; queue it for this layer.

    max_items, max_bytes:
        Bounds on the writes held (ready, waiting behind their key's in-flight write, in
        flight). ``bytes`` are what the driver says a write costs (its encoded value and
        key). A single write bigger than ``max_bytes`` is taken only into an empty queue.
    batch_size:
        Writes sent in one batch (one script call or pipeline, one bulk call) at most; a
        full batch is sent at once.
    max_delay:
        Seconds a ready write waits for a batch to fill before it is sent anyway.
    when_full:
        ``"block"``: ``set()`` waits for room up to ``block_timeout`` seconds (``None``:
        without limit), then raises ``QueueFull``. ``"raise"``: ``QueueFull`` at once.
    retry:
        Backoff between attempts of a failing batch; ``retry_on`` says which errors are
        worth it (a transient ``LayerError`` always is).
    dead_letter:
        Where writes that fail for good go: a path (a JSONL file appended to; relative to
        the working directory when the cache is built), a sink object (``DeadLetter``,
        e.g. with a callback), or ``None`` (logged at ERROR and counted, nothing kept).
    close_timeout:
        How long ``close()`` (and ``with`` exit, interpreter exit and SIGTERM) waits for the
        queue to be delivered; what is still queued then goes to the dead letter, not
        nowhere (``None``: wait without limit). ``close`` returns within it, plus the time
        the dead-letter sink takes, even when a batch hangs.
    concurrency:
        Batches sent at once (threads, or tasks under asyncio; each on a connection of its
        own). A key's writes still go out in order: a later write waits for the batch that
        carries the earlier one.
    max_lag:
        Seconds the oldest queued write may wait before ``set()`` pushes back (waits as
        for a full queue, up to ``block_timeout``, then ``QueueFull``), so that the queue
        cannot fall further behind than that while the layer takes writes (``None``: no
        bound but the item and byte ones). While the layer is down, only those hold.
    batch_timeout:
        Seconds a batch's attempt may take. Past it the attempt is counted
        (``stats().write_queues[...].timeouts``) and logged at ERROR, and the worker stops
        waiting for it: under asyncio the attempt is cancelled and retried; a thread cannot
        be stopped, so its keys wait for it while the other batches go on (another thread
        takes its place). Whatever it never delivers goes to the dead letter at close.
        ``None``: no limit.
    journal:
        A directory for a local journal: every write is appended to a file there before
        ``set()`` returns, so that a process killed outright (SIGKILL, OOM killer, a crash)
        loses nothing it acknowledged: the next cache built with the same journal
        directory and layer delivers what the dead process left (see
        ``multilayercache.journal``). ``None``: no journal.
    journal_fsync:
        Also survive a power cut or a kernel crash: the journal is synced to disk before
        ``set()`` returns (several writers share each sync). Costs a disk flush per batch
        of concurrent writes.

    Why these defaults:

    * ``max_items=100_000``, ``max_bytes=64 MiB``: room for two seconds of writes at 50k/s
      (and far longer at usual rates, or with hot keys coalescing), at a memory cost a
      service notices but survives; both bounds because keys vary from bytes to megabytes.
    * ``batch_size=500``: a batch of 500 SETs (one script call) amortizes the round trip
      (throughput is flat past a few hundred writes) while one batch still takes about a
      millisecond of the server's time, so writes of other keys do not wait behind a huge one.
    * ``max_delay=0.05``: other processes see a write in Redis within about 50 ms at low
      write rates, and a busy queue fills its batches long before that.
    * ``when_full="block"``, ``block_timeout=1.0``: back-pressure slows writers down instead
      of failing them on a short burst; past a second the slower layer is not keeping up
      (or is down with a full queue) and the caller should hear about it.
    * ``retry``: no attempt limit, a 60 s budget, delays ``uniform(0, min(1 s, 50 ms * 2**n))``.
      A Redis restart (the 5 s kill of the acceptance test) or a Sentinel failover (10-30 s)
      is ridden out, not dead-lettered; a batch sits in memory at most about a minute
      before it goes to the dead letter; and with the 1 s cap a write lands on average
      within half a second of the server coming back. While the layer's breaker is open
      each attempt fails at once, so the ~120 attempts of a minute cost nothing.
    * ``concurrency=2``: a second pipeline is packed and sent while the first one's replies
      come back, which keeps a local Redis ahead of a single tight writer.
    * ``max_lag=2.0``: delivery normally runs within ``max_delay``; two seconds behind means
      the writers outpace the layer, and a queue bounded by two seconds of writes drains
      well within ``close_timeout`` (and a container's grace period) when the process is
      told to stop.
    * ``batch_timeout=30.0``: far longer than any healthy batch (a Redis one fails after its
      0.5 s socket timeout anyway), short enough to notice a persistence writer stuck in a
      lock wait.
    * ``dead_letter="multilayercache-dead-letters.jsonl"``: a file next to the service,
      easy to find and replay (``multilayercache.deadletter.replay``); it is created only
      when a write first fails for good. A temporary directory would lose it on reboot,
      a home directory is often read-only in a container.
    """

    max_items: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    batch_size: int = 500
    max_delay: float = 0.05
    when_full: WhenFull = "block"
    block_timeout: float | None = 1.0
    retry: RetryPolicy = field(default=DEFAULT_WRITE_RETRY)
    dead_letter: str | os.PathLike[str] | DeadLetterSink | None = DEFAULT_DEAD_LETTER_PATH
    close_timeout: float | None = 10.0
    concurrency: int = 2
    max_lag: float | None = 2.0
    batch_timeout: float | None = 30.0
    journal: str | os.PathLike[str] | None = None
    journal_fsync: bool = False

    def __post_init__(self) -> None:
        for name in ("max_items", "max_bytes", "batch_size", "concurrency"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.batch_size > self.max_items:
            raise ValueError(
                f"batch_size ({self.batch_size}) must not exceed max_items ({self.max_items}): "
                f"a batch could never fill"
            )
        if not _seconds(self.max_delay):
            raise ValueError(f"max_delay must be seconds >= 0, got {self.max_delay!r}")
        if self.when_full not in ("block", "raise"):
            raise ValueError(f'when_full must be "block" or "raise", got {self.when_full!r}')
        if self.block_timeout is not None and not _seconds(self.block_timeout):
            raise ValueError(
                f"block_timeout must be seconds >= 0 or None, got {self.block_timeout!r}"
            )
        if self.close_timeout is not None and not _seconds(self.close_timeout):
            raise ValueError(
                f"close_timeout must be seconds >= 0 or None, got {self.close_timeout!r}"
            )
        for name in ("max_lag", "batch_timeout"):
            value = getattr(self, name)
            if value is not None and (not _seconds(value) or value == 0):
                raise ValueError(f"{name} must be seconds > 0 or None, got {value!r}")
        if self.journal is not None and not isinstance(self.journal, (str, os.PathLike)):
            raise TypeError(f"journal must be a directory path or None, got {self.journal!r}")
        if not isinstance(self.journal_fsync, bool):
            raise TypeError(f"journal_fsync must be a bool, got {self.journal_fsync!r}")
        if not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {self.retry!r}")
        sink = self.dead_letter
        if not (sink is None or isinstance(sink, (str, os.PathLike, DeadLetterSink))):
            raise TypeError(
                f"dead_letter must be a path, an object with append(records), or None, got {sink!r}"
            )


WritePolicy = WriteThrough | WriteBehind
"""A layer's write policy (``LayerPolicy(write=...)``)."""


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf


__all__ = [
    "DEFAULT_DEAD_LETTER_PATH",
    "DEFAULT_WRITE_RETRY",
    "DeadLetterSink",
    "Op",
    "QueueFull",
    "WhenFull",
    "WritePolicy",
    "WriteBehind",
    "WriteQueueClosed",
    "WriteThrough",
    "write_transient",
]
