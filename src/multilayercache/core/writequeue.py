"""The write-behind queue: which writes to send to a slower layer, when, in what batches,
what to retry and what to give up on. IO-free and single-threaded: the workers
(``multilayercache.sync.writeback``, ``multilayercache.aio.writeback``) do the sending, the
waiting and the locking. The policy it follows is ``WriteBehind`` (``writepolicy.py``).

A ``WriteBehind(...)`` layer acknowledges once the faster layers hold the value and queues
the write for itself (Redis behind the L1, or a persistence writer behind Redis). The queue:

* **One slot per key, latest wins.** A newer write of a key replaces its pending one (value,
  delete or expiry alike): ten updates of a hot key cost one Redis command. The slot keeps
  its place and its age, so a key rewritten every millisecond is still sent within
  ``max_delay`` instead of being pushed back forever.
* **Per-key order.** A write of a key whose earlier write is *in flight* (taken in a batch
  that has not finished) waits behind it, in a second slot, and cannot be taken until that
  batch is over (``done`` or given up). So a later write is never sent before, or at the same
  time as, an earlier one of the same key: the slower layer ends with the latest value even
  when batches run concurrently or are retried.
* **Batches, on size or age.** ``due(now)`` says when to send: ``batch_size`` writes are
  ready, or the oldest ready one has waited ``max_delay``, or a ``flush`` or ``close`` wants
  everything out. ``take(now)`` hands out up to ``batch_size`` writes, oldest first, as a
  ``Batch`` (one Redis script call or pipeline, or one bulk call of a persistence
  writer).
* **Bounded: items and bytes**, counting every write held (ready, waiting behind a key's
  in-flight write, in flight). ``put`` raises ``QueueFull`` rather than exceed a bound; the
  driver blocks (``when_full="block"``, up to ``block_timeout``) or lets it propagate
  (``"raise"``). A write that only replaces a pending one of the same key needs no new slot,
  so hot keys keep being accepted when the queue is full. Nothing is ever dropped.
* **Retries, then the dead letter.** ``failed(batch, error, now)`` returns how long to wait
  before sending the batch again (full-jitter backoff, ``core/backoff.py``), or ``None``:
  give up, and ``batch.dead`` holds the writes for the dead-letter sink
  (``multilayercache.deadletter``); the driver hands them over, then calls
  ``settle(batch)``. Transient errors (``LayerError.transient``, which includes
  a layer's open breaker, and socket errors) are retried until the policy's budget is spent;
  any other error gives up at once, since sending the same bytes again cannot succeed.
* **Superseded writes are never dead-lettered.** When a batch fails, a write of it whose key
  has a newer write waiting is dropped from the batch (neither retried nor dead-lettered),
  and the newer one becomes ready. Its value is stale: replaying it from a dead-letter file
  could overwrite the newer value, and retrying it only delays the newer one. The newer
  write is the key's latest, and it is delivered or dead-lettered in its turn, so every
  key's latest acknowledged value still ends up in the slower layer or in the dead letter.
* **Lag.** ``lag(now)`` is how long the oldest write held has waited. With ``max_lag`` set,
  a write that needs a new slot is refused while the lag is over it (``offer`` returns
  False, ``full`` says so): the driver then blocks the writer as for a full queue, so the
  queue cannot fall further behind than that while the layer is up. While batches fail (the
  layer is down) the lag grows with the outage and only the item and byte bounds hold; the
  lag bound comes back once the queue has caught up again.
* **Late writes.** After a batch fails, the queue is ``recovering`` until its lag is back
  under ``max_lag`` (1 s without one): batches taken meanwhile are ``late``, and those and
  every retry are sent so as to land only over older values (the layer's
  ``only_if_newer``): another process may have written the same keys while this one was
  cut off or its layer down. So a write sent as usual is at most ``max_lag`` old.
* **Abandon.** ``abandon(...)`` hands every write held to the dead letter at once, in-flight
  ones included (their batch may land later: their record says the outcome is unknown), and
  closes the queue: what a ``close`` whose time ran out does, so that it returns on time
  even when a batch hangs. The abandoned batches' outcomes are then ignored.
* **Flush marks.** ``mark()`` returns a token; ``reached(token)`` is true once every write
  put before it has finished (delivered, dead-lettered and settled, or superseded by a
  later write that finished): after a flush, every acknowledged write is in the slower
  layer or in the dead-letter sink. A ``flush()`` waits for its own mark, not for an idle
  queue, so it ends even while other threads keep writing. While a mark is not reached,
  ``due`` sends at once.

Every operation is O(1) amortized (O(batch) for ``take``/``done``/``failed``): dicts keyed
by key and a deque of ready keys in order; no scan, no heap. Deterministic: the time is the
``now`` argument (monotonic seconds from the driver), the jitter an injectable
``random.Random``.

**Not thread-safe, on purpose.** Drivers call it under one lock (a ``threading.Condition``
on the sync side, notified whenever ``put`` adds work or ``done``/``failed`` frees room);
asyncio code calls it from one event loop without awaiting inside a call. Reads that check
``pending(key)`` take the same lock: a write moves between the ready, waiting and in-flight
slots inside one call, and a read without the lock could miss it during the move.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import repeat, starmap
from operator import attrgetter
from typing import Any, NamedTuple

from .backoff import RetryState
from .errors import retryable
from .writepolicy import Op, QueueFull, WriteBehind, WriteQueueClosed

_SINCE = attrgetter("since")
_SIZE = attrgetter("size")
_EPOCH = attrgetter("epoch")


class QueuedWrite:
    """One write held by the queue. Drivers read ``key``, ``op``, ``payload`` and ``size``
    and must not change anything. ``since``: when its key's slot opened (the age that
    ``max_delay`` counts); ``epoch``: which flush marks wait for it."""

    __slots__ = ("key", "op", "payload", "size", "since", "epoch")

    def __init__(self, key: Any, op: Op, payload: Any, size: int, since: float, epoch: int):
        self.key = key
        self.op = op
        self.payload = payload
        self.size = size
        self.since = since
        self.epoch = epoch

    def __repr__(self) -> str:
        return f"<QueuedWrite {self.op} {self.key!r} ({self.size} bytes)>"


class DeadWrite(NamedTuple):
    """A write given up on: what a dead-letter record is made from. ``attempts``: times its
    batch was sent; ``error``: the last error."""

    key: Any
    op: Op
    payload: Any
    size: int
    error: BaseException
    attempts: int


class Batch:
    """Writes taken together (one script call or pipeline, one bulk call): distinct keys,
    oldest first.

    ``attempts``: sends so far, counting the one about to be made (1 after ``take``).
    ``dead``: set by ``done``/``failed``, the writes to hand to the dead-letter sink
    (then ``WriteQueue.settle(batch)``).
    ``failed`` may drop superseded writes from ``writes`` before a retry: rebuild the
    request from ``writes`` on every attempt."""

    __slots__ = (
        "writes", "attempts", "taken_at", "oldest", "dead", "abandoned", "late", "_retry",
        "_open", "_unsettled",
    )  # fmt: skip

    def __init__(
        self, writes: list[QueuedWrite], taken_at: float, retry: RetryState | None
    ) -> None:
        self.writes = writes
        self.attempts = 1
        self.taken_at = taken_at
        self.oldest = min(map(_SINCE, writes), default=taken_at)
        """When the oldest of its writes was queued (what ``lag`` counts)."""
        self.dead: list[DeadWrite] = []
        self.abandoned = False
        """``abandon()`` dead-lettered its writes: its outcome no longer matters."""
        self.late = False
        """Taken while the queue was recovering from failures: its writes may be older than
        what another process wrote since, so the layer writes them only over older values
        (``only_if_newer``), as it does every retry."""
        self._retry = retry
        self._open = True
        self._unsettled: list[int] = []  # flush epochs of the dead writes, until settle()

    def __len__(self) -> int:
        return len(self.writes)

    def __iter__(self) -> Iterator[QueuedWrite]:
        return iter(self.writes)

    @property
    def finished(self) -> bool:
        """``done`` was called, or ``failed`` gave up: nothing more to send."""
        return not self._open

    def __repr__(self) -> str:
        state = "finished" if self.finished else f"attempt {self.attempts}"
        return f"<Batch of {len(self.writes)} writes, {state}>"


@dataclass(frozen=True)
class WriteQueueStats:
    """A write-behind queue's gauges and counters (``stats()``)."""

    depth: int
    """Writes held: ready, waiting behind their key's in-flight write, or in flight."""
    bytes: int
    """Their sizes added up."""
    in_flight: int
    """Writes in batches being sent."""
    puts: int
    """Writes accepted."""
    coalesced: int
    """Writes replaced by a newer write of their key before they were sent or retried."""
    batches: int
    """Batches taken."""
    delivered: int
    """Writes sent successfully (``done``)."""
    retries: int
    """Batch attempts after the first."""
    dead_lettered: int
    """Writes given up on (handed to the dead-letter sink)."""
    rejected: int
    """Writes refused with ``QueueFull`` (never acknowledged)."""
    lag: float = 0.0
    """Seconds the oldest write held has waited (0 when none is held)."""
    timeouts: int = 0
    """Batch attempts that ran past ``batch_timeout`` (counted by the worker)."""
    journaled: int = 0
    """Writes appended to the local journal (``WriteBehind(journal=...)``)."""
    dropped: int = 0
    """Always 0: the queue never drops a write. Here so that a dashboard can show it."""


REFUSED = 0
QUEUED = 1
WAKE = 2
"""``offer``'s answers: refused (no room now), queued, queued and worth waking a taker for."""

_NO_KEY: Any = object()
CAUGHT_UP_SECONDS = 1.0
"""Without ``max_lag``: the lag under which a queue that saw failures has caught up."""


class WriteQueue:
    """The write-behind state machine of one layer (see the module docstring).

    >>> queue = WriteQueue(WriteBehind(batch_size=2, max_delay=0.05))
    >>> queue.put("a", "set", b"1", 1, now=0.0)
    >>> queue.put("a", "set", b"2", 1, now=0.01)      # latest wins
    >>> queue.pending("a"), queue.due(0.02), queue.due(0.05)
    (('set', b'2'), False, True)
    >>> batch = queue.take(0.05)
    >>> [(w.key, w.payload) for w in batch.writes]
    [('a', b'2')]
    >>> queue.put("a", "delete", None, 0, now=0.06)   # waits behind the in-flight write
    >>> queue.take(0.2) is None
    True
    >>> queue.done(batch); queue.pending("a")
    ('delete', None)
    """

    def __init__(self, options: WriteBehind | None = None, rng: random.Random | None = None):
        self.options = options or WriteBehind()
        self._max_items = self.options.max_items
        self._max_bytes = self.options.max_bytes
        self._max_lag = self.options.max_lag
        self._batch_size = self.options.batch_size
        # Caught up again after failures once the lag is back under this.
        self._caught_up_lag = self._max_lag if self._max_lag is not None else CAUGHT_UP_SECONDS
        retry = self.options.retry
        user_retry_on = retry.retry_on
        # A retryable LayerError is retried whatever the policy says (it is what the word
        # means: an open breaker, a server out of reach or answering "not now"); the policy
        # adds its own errors.
        self._retry_policy = dataclasses.replace(
            retry, retry_on=lambda error: retryable(error) or user_retry_on(error)
        )
        self._rng = rng or random.Random()
        self._ready: dict[Any, QueuedWrite] = {}  # takeable, one per key
        self._order: deque[Any] = deque()  # exactly the keys of _ready, oldest first
        self._waiting: dict[Any, QueuedWrite] = {}  # behind their key's in-flight write
        self._in_flight: dict[Any, QueuedWrite] = {}
        self._bytes = 0
        self._closed = False
        # Flush marks: open slots counted per epoch; epochs only grow, so the dict's first
        # key is the oldest epoch with an unfinished write.
        self._epoch = 0
        self._open: dict[int, int] = {}
        self._flush_upto = -1  # the newest mark somebody waits for
        self._batches: dict[Batch, None] = {}  # in flight, oldest first
        self.recovering = False
        """Batches failed lately and the queue has not caught up since: its writes are late
        (``Batch.late``), and the lag bound waits until it has."""
        self._unsettled = 0  # dead writes not yet settled (in the dead-letter sink)
        self.puts = 0
        self.coalesced = 0
        self.batches = 0
        self.delivered = 0
        self.retries = 0
        self.dead_lettered = 0
        self.rejected = 0
        self.timeouts = 0
        self.journaled = 0

    # ---------------------------------------------------------------- writers
    def put(self, key: Any, op: Op, payload: Any, size: int, now: float) -> None:
        """Queue a write of ``key`` (``op``: "set" or "delete"; ``payload``: opaque, what
        the driver will send; ``size``: its cost in bytes). Raises ``QueueFull`` if a bound
        would be exceeded (nothing queued; counted in ``rejected``: a driver that blocks
        waits while ``full(size, key)`` first, then puts), ``WriteQueueClosed`` after
        ``close()``."""
        if not self.offer(key, op, payload, size, now):
            raise self.refusal(now)

    def offer(self, key: Any, op: Op, payload: Any, size: int, now: float) -> int:
        """``put``, but a write that does not fit is refused by returning ``REFUSED`` (0:
        false; not counted in ``rejected``: the caller may still wait for room and
        ``put``). An accepted write returns ``WAKE`` when it may have made a batch due that
        a sleeping taker would not see coming by its own timer (``next_due_in``): the first
        ready write of an empty queue, or the ``batch_size``-th; else ``QUEUED``. Both are
        true."""
        if op != "set" and op != "delete":
            raise ValueError(f'op must be "set" or "delete", got {op!r}')
        if self._closed:
            raise WriteQueueClosed("the write-behind queue is closed")
        # full() inlined: this is the hot path of every write-behind set().
        ready = self._ready
        slots = self._waiting if key in self._in_flight else ready
        old = slots.get(key)
        if old is not None:  # latest wins; the slot keeps its age and its flush epoch
            held = self._bytes - old.size
            if held + size > self._max_bytes and held > 0:
                return REFUSED
            self.puts += 1
            self.coalesced += 1
            self._bytes = held + size
            # In place: a ready or waiting write belongs to no batch, nothing else holds it.
            old.op, old.payload, old.size = op, payload, size
            return QUEUED
        held = self._bytes
        if len(ready) + len(self._waiting) + len(self._in_flight) >= self._max_items or (
            held + size > self._max_bytes and held > 0
        ):
            return REFUSED
        if self._max_lag is not None and not self.recovering:  # lagging(), inlined
            oldest = ready[self._order[0]].since if ready else now
            if self._batches:
                oldest = min(oldest, next(iter(self._batches)).oldest)
            if now - oldest > self._max_lag:
                return REFUSED
        epoch = self._epoch
        write = QueuedWrite(key, op, payload, size, now, epoch)
        # The queue changes from here on, and a signal handler's exception (KeyboardInterrupt:
        # Python raises it where a call returns or a Python function starts) must not land
        # halfway: no call until the key is in ``_order``, the last change. (Storing the
        # key may run its ``__eq__``: interrupted there, nothing is stored.)
        slots[key] = write
        opened = self._open
        opened[epoch] = opened[epoch] + 1 if epoch in opened else 1
        self._bytes = held + size
        self.puts += 1
        if slots is not ready:
            return QUEUED
        self._order.append(key)
        count = len(ready)
        return WAKE if count == 1 or count == self._batch_size else QUEUED

    def restore(self, key: Any, op: Op, payload: Any, size: int, now: float) -> None:
        """Queue a write acknowledged by an earlier process (found in its journal), whatever
        the bounds: it was accepted once, and refusing it now would lose it."""
        if not self.offer(key, op, payload, size, now):
            limits = self._max_items, self._max_bytes, self._max_lag
            self._max_items, self._max_bytes, self._max_lag = 2**62, 2**62, None
            try:
                self.offer(key, op, payload, size, now)
            finally:
                self._max_items, self._max_bytes, self._max_lag = limits

    def full(self, size: int, key: Any = _NO_KEY, now: float | None = None) -> bool:
        """Would a write of ``size`` bytes (of ``key``, when given: a write that replaces a
        pending one of the same key needs no new slot) exceed a bound? With ``now``, a new
        slot while ``lagging(now)`` counts as exceeding one."""
        replaced = None
        if key is not _NO_KEY:
            replaced = (self._waiting if key in self._in_flight else self._ready).get(key)
        items = self.depth + (replaced is None)
        held = self._bytes - (0 if replaced is None else replaced.size)
        if items > self._max_items:
            return True
        if replaced is None and now is not None and self.lagging(now):
            return True
        # An oversize write alone in the queue is let in: otherwise it could never be.
        return held + size > self._max_bytes and held > 0

    def pending(self, key: Any) -> tuple[Op, Any] | None:
        """``(op, payload)`` of the latest write of ``key`` not yet finished (waiting,
        ready or in flight), or ``None``: what a read must answer instead of the slower
        layer's (older) value."""
        write = self._waiting.get(key) or self._ready.get(key) or self._in_flight.get(key)
        return None if write is None else (write.op, write.payload)

    def lag(self, now: float) -> float:
        """Seconds the oldest write held has waited: the write at the front of the ready
        ones, or the oldest batch in flight (0 when nothing is held)."""
        oldest = now
        if self._order:
            oldest = self._ready[self._order[0]].since
        if self._batches:
            oldest = min(oldest, next(iter(self._batches)).oldest)
        return max(0.0, now - oldest)

    def lagging(self, now: float) -> bool:
        """Is the queue further behind than ``max_lag`` while the layer takes writes? Not
        while batches fail, nor until the queue has caught up after they did."""
        if self._max_lag is None or self.recovering:
            return False
        return self.lag(now) > self._max_lag

    # ---------------------------------------------------------------- the worker
    def due(self, now: float) -> bool:
        """Should a batch be taken now? Yes when ``batch_size`` writes are ready, the oldest
        ready one is ``max_delay`` old, a flush mark is not reached, or the queue is closed
        (and something is ready)."""
        ready = len(self._ready)
        if not ready:
            return False
        if ready >= self.options.batch_size or self._closed or self._flushing():
            return True
        return now - self._ready[self._order[0]].since >= self.options.max_delay

    def next_due_in(self, now: float) -> float | None:
        """Seconds until ``due`` turns true by age alone (0: due now), or ``None`` when
        nothing is ready: how long a worker may sleep unless woken by a ``put``."""
        if not self._ready:
            return None
        if self.due(now):
            return 0.0
        return self.options.max_delay - (now - self._ready[self._order[0]].since)

    def take(self, now: float) -> Batch | None:
        """Up to ``batch_size`` ready writes, oldest first, now in flight (their keys' later
        writes wait until the batch finishes); ``None`` if none is ready. Whether it is time
        is ``due``'s question: ``take`` does not ask it. Report the outcome with ``done`` or
        ``failed``."""
        ready, order, in_flight = self._ready, self._order, self._in_flight
        count = min(len(ready), self.options.batch_size)
        if not count:
            return None
        # Whole-batch C loops (the sender's CPU is taken from the writers: one GIL).
        if count == len(order):
            keys = list(order)
            order.clear()
        else:  # popleft ``count`` times, in C
            keys = list(starmap(order.popleft, repeat((), count)))
        writes = list(map(ready.pop, keys))
        in_flight.update(zip(keys, writes, strict=True))
        self.batches += 1
        if self.recovering and self.lag(now) <= self._caught_up_lag:
            self.recovering = False
        batch = Batch(writes, now, RetryState(self._retry_policy, self._rng))
        batch.late = self.recovering
        self._batches[batch] = None
        return batch

    def done(self, batch: Batch, errors: Mapping[Any, BaseException] | None = None) -> None:
        """The batch was sent. ``errors``: keys whose own command failed (a pipeline run
        with ``raise_on_error=False``): those writes go to ``batch.dead`` at once (the
        backend answered, so sending them again would fail again), unless superseded.
        Then ``settle(batch)`` once ``batch.dead`` (if any) is in the sink. Ignored for a
        batch that ``abandon`` took over."""
        if batch.abandoned:
            return
        self._check_open(batch)
        batch._open = False
        del self._batches[batch]
        if not errors and not self._waiting:  # the common batch, in whole-batch steps
            self._release_all(batch.writes)
            return
        for write in batch.writes:
            error = errors.get(write.key) if errors else None
            if error is None:
                self.delivered += 1
                self._release(write)
            elif self._superseded(write):
                self.coalesced += 1
                self._release(write, superseded=True)
            else:
                self._bury(batch, write, error)

    def failed(self, batch: Batch, error: BaseException, now: float) -> float | None:
        """The batch's attempt failed with ``error`` (some of it may have landed: resending
        sets and deletes is harmless). Returns the seconds to wait before sending it again,
        or ``None``: give up, hand ``batch.dead`` to the dead-letter sink (it may be empty,
        when every write was superseded), then ``settle(batch)``. Writes superseded by a
        newer write of their key leave the batch either way (see the module docstring).
        ``None`` for a batch that ``abandon`` took over (its writes are dead-lettered)."""
        if batch.abandoned:
            return None
        self._check_open(batch)
        self.recovering = True
        kept = []
        for write in batch.writes:
            if self._superseded(write):
                self.coalesced += 1
                self._release(write, superseded=True)
            else:
                kept.append(write)
        batch.writes = kept
        retry = batch._retry  # None only for a given-up batch, which holds no writes
        delay = (
            retry.next_delay(error, now - batch.taken_at) if kept and retry is not None else None
        )
        if delay is not None:
            batch.attempts += 1
            self.retries += 1
            return delay
        batch._open = False
        del self._batches[batch]
        for write in kept:
            self._bury(batch, write, error)
        return None

    def settle(self, batch: Batch) -> None:
        """``batch.dead`` was handed to the dead-letter sink (successfully or not: call it
        in a ``finally``). Until then flush marks that wait for those writes are not
        reached and the queue is not ``idle``, so that a ``flush()`` returns only once
        every write is in the slower layer *or in the dead letter*. A no-op for a batch
        without dead writes; idempotent."""
        for epoch in batch._unsettled:
            self._finish_slot(epoch)
        self._unsettled -= len(batch._unsettled)
        batch._unsettled.clear()

    # ---------------------------------------------------------------- flush and close
    def mark(self, flush: bool = True) -> int:
        """A flush mark: ``reached(mark)`` once every write put before this call finished.
        Until then ``due`` is true whenever something is ready (unless not ``flush``: a
        mark that only watches, as the journal's do)."""
        mark = self._epoch
        self._epoch += 1
        if flush:
            self._flush_upto = mark
        return mark

    def reached(self, mark: int) -> bool:
        """Has every write put before ``mark()`` returned ``mark`` finished?"""
        oldest = next(iter(self._open), None)
        return oldest is None or oldest > mark

    def close(self) -> None:
        """Refuse new writes (``WriteQueueClosed``) and send the rest without waiting for
        batches to fill. Idempotent. The driver then waits for ``idle``."""
        self._closed = True

    def abandon(self, error: BaseException, in_flight_error: BaseException, now: float) -> Batch:
        """Give up on every write held: close the queue and return a finished batch whose
        ``dead`` holds them all (those of batches in flight with ``in_flight_error``: they
        may land yet), for the dead-letter sink; then ``settle`` it as any other. The
        batches in flight are abandoned: ``done`` and ``failed`` ignore them from now on."""
        self._closed = True
        given_up = Batch([], now, None)
        given_up._open = False
        for batch in self._batches:
            batch.abandoned = True
            batch._open = False
            for write in batch.writes:
                newer = self._waiting.get(write.key)
                if newer is None:
                    self._give_up(given_up, write, in_flight_error, batch.attempts)
                else:  # superseded: the newer write is dead-lettered below, with its epoch
                    self.coalesced += 1
                    if write.epoch < newer.epoch:
                        newer.epoch, write.epoch = write.epoch, newer.epoch
                    self._finish_slot(write.epoch)
        for write in (*self._waiting.values(), *self._ready.values()):
            self._give_up(given_up, write, error, 0)
        self._batches.clear()
        self._ready.clear()
        self._order.clear()
        self._waiting.clear()
        self._in_flight.clear()
        self._bytes = 0
        return given_up

    def forget(self) -> None:
        """Hold nothing, as a new queue (counters kept): a forked child's copy of its
        parent's queue. The parent delivers those writes; the child sending them too could
        land an older value after the parent's newer one."""
        self._ready.clear()
        self._order.clear()
        self._waiting.clear()
        self._in_flight.clear()
        self._batches.clear()
        self._open.clear()
        self._bytes = 0
        self._unsettled = 0
        self._flush_upto = -1
        self.recovering = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def depth(self) -> int:
        """Writes held (ready, waiting, in flight)."""
        return len(self._ready) + len(self._waiting) + len(self._in_flight)

    def __len__(self) -> int:
        return self.depth

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def ready(self) -> int:
        """Writes that may be taken now (not waiting behind their key's in-flight one)."""
        return len(self._ready)

    @property
    def in_flight(self) -> int:
        """Writes in batches not finished."""
        return len(self._in_flight)

    @property
    def batches_in_flight(self) -> int:
        return len(self._batches)

    @property
    def empty(self) -> bool:
        """No write left to take, now or after the in-flight batches (some may be in
        flight)."""
        return not self._ready and not self._waiting

    @property
    def idle(self) -> bool:
        """Nothing held at all: every write accepted so far has finished (dead ones
        settled)."""
        return not self._ready and not self._waiting and not self._in_flight and not self._unsettled

    @property
    def unsettled(self) -> int:
        """Dead writes handed out in ``batch.dead`` and not yet ``settle``d."""
        return self._unsettled

    def stats(self, now: float | None = None) -> WriteQueueStats:
        """The gauges and counters (``lag`` needs ``now``, monotonic seconds)."""
        return WriteQueueStats(
            depth=self.depth,
            bytes=self._bytes,
            in_flight=len(self._in_flight),
            puts=self.puts,
            coalesced=self.coalesced,
            batches=self.batches,
            delivered=self.delivered,
            retries=self.retries,
            dead_lettered=self.dead_lettered,
            rejected=self.rejected,
            lag=self.lag(now) if now is not None else 0.0,
            timeouts=self.timeouts,
            journaled=self.journaled,
        )

    def __repr__(self) -> str:
        return (
            f"<WriteQueue {self.depth} writes ({self._bytes} bytes), "
            f"{len(self._in_flight)} in flight{', closed' if self._closed else ''}>"
        )

    # ---------------------------------------------------------------- internals
    def refusal(self, now: float | None = None) -> QueueFull:
        """The ``QueueFull`` for a write refused at ``now`` (counted in ``rejected``); its
        message names the bound: the writes, the bytes, or (given ``now``) ``max_lag``."""
        self.rejected += 1
        held = f"{self.depth} writes, {self._bytes} bytes held"
        if now is not None and self.depth < self._max_items and self.lagging(now):
            why = f"write-behind queue behind: its oldest write waited {self.lag(now):.1f} s"
            held = f"{held}; max_lag {self._max_lag} s"
        else:
            why = "write-behind queue full"
            held = f"{held} (max {self._max_items}, {self._max_bytes})"
        return QueueFull(
            f"{why}: {held}",
            depth=self.depth,
            bytes=self._bytes,
        )

    def _flushing(self) -> bool:
        oldest = next(iter(self._open), None)
        return oldest is not None and oldest <= self._flush_upto

    def _superseded(self, write: QueuedWrite) -> bool:
        return write.key in self._waiting

    def _release(self, write: QueuedWrite, superseded: bool = False, finish: bool = True) -> None:
        """``write`` (in flight) is finished: free its key, and make the key's waiting
        write ready, at the front (it has waited longest for its turn). A ``superseded``
        write hands its age and its flush epoch to the newer write that replaces it: a flush
        mark then waits until the newer value is out. A delivered one does not, or a key
        rewritten without pause would keep an old mark open forever."""
        key = write.key
        del self._in_flight[key]
        self._bytes -= write.size
        newer = self._waiting.pop(key, None)
        if newer is not None:
            if superseded:
                newer.since = min(newer.since, write.since)
                if write.epoch < newer.epoch:  # the newer write keeps the older epoch open
                    newer.epoch, write.epoch = write.epoch, newer.epoch
            self._ready[key] = newer
            self._order.appendleft(key)
        if finish:
            self._finish_slot(write.epoch)

    def _release_all(self, writes: list[QueuedWrite]) -> None:
        """``_release`` of every write of a delivered batch, when no write waits behind
        any of them."""
        in_flight = self._in_flight
        for write in writes:
            del in_flight[write.key]
        self.delivered += len(writes)
        self._bytes -= sum(map(_SIZE, writes))
        for epoch, count in Counter(map(_EPOCH, writes)).items():
            self._finish_slot(epoch, count)

    def _finish_slot(self, epoch: int, count: int = 1) -> None:
        left = self._open[epoch] - count
        if left:
            self._open[epoch] = left
        else:
            del self._open[epoch]

    def _give_up(
        self, batch: Batch, write: QueuedWrite, error: BaseException, attempts: int
    ) -> None:
        """``abandon``'s ``_bury``: the structures are cleared in one go afterwards."""
        self.dead_lettered += 1
        batch.dead.append(
            DeadWrite(write.key, write.op, write.payload, write.size, error, attempts)
        )
        batch._unsettled.append(write.epoch)
        self._unsettled += 1

    def _bury(self, batch: Batch, write: QueuedWrite, error: BaseException) -> None:
        """``write`` failed for good: to ``batch.dead``. Its key is free at once (a newer
        write of it may go), but flush marks wait for it until ``settle(batch)``."""
        self.dead_lettered += 1
        batch.dead.append(
            DeadWrite(write.key, write.op, write.payload, write.size, error, batch.attempts)
        )
        batch._unsettled.append(write.epoch)
        self._unsettled += 1
        self._release(write, finish=False)

    @staticmethod
    def _check_open(batch: Batch) -> None:
        if not batch._open:
            raise ValueError(f"{batch!r} is finished: report each batch's outcome once")


__all__ = [
    "QUEUED",
    "REFUSED",
    "WAKE",
    "Batch",
    "DeadWrite",
    "QueuedWrite",
    "WriteQueue",
    "WriteQueueStats",
]
