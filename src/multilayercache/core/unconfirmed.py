"""Deletes that did not reach a layer (``UnconfirmedDeletes``): keys this manager must not
serve, nor copy up, from that layer until a later delete or set of the key reaches it.

A write-through ``delete`` whose layer could not be reached (a partition, a dead server,
an open breaker, a timeout) raises: the caller knows. But the layer may still hold the old
value, and once it answers again every read would find it there, serve it and copy it into
L1, for the rest of its TTL: the delete silently undone. So the manager marks the key for
that layer. A read that reaches the layer first sends the delete again (success clears
the mark, and the read is then a miss there; failure leaves it, and the layer counts as
not holding the key); a set or delete of the key that reaches the layer clears it too.

A mark lasts as long as the layer could still hold the value (its longest TTL plus stale
window, see ``Tier.longest_hold``): after that, Redis dropped the value anyway (marks past
their deadline are dropped as they are met, and from the oldest on at each new mark). At most
``max_keys`` marks are kept: past that the oldest is dropped, counted in ``dropped`` (the
manager logs it), and its key may be served from the layer again.

Not thread-safe, like the rest of the core: the manager calls it under its lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

MAX_KEYS = 10_000


class UnconfirmedDeletes:
    """Marks of ``(key, depth)``, each until a deadline (monotonic seconds).

    >>> marks = UnconfirmedDeletes()
    >>> marks.mark("user:1", depth=1, now=0.0, hold=60.0)
    >>> marks.holds("user:1", 1, now=30.0), marks.holds("user:1", 1, now=60.0)
    (True, False)
    """

    __slots__ = ("max_keys", "_until", "dropped")

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.max_keys = max_keys
        self._until: OrderedDict[tuple[Hashable, int], float] = OrderedDict()
        """Deadline of each mark, oldest mark first."""
        self.dropped = 0
        """Marks dropped to make room for newer ones before they were confirmed."""

    def __len__(self) -> int:
        return len(self._until)

    def mark(self, key: Hashable, depth: int, now: float, hold: float) -> Hashable | None:
        """The delete of ``key`` did not reach the layer at ``depth``, which may hold it for
        ``hold`` more seconds. Returns the key whose mark was dropped to make room, if
        any."""
        until = self._until
        while until:  # marks past their deadline, from the oldest on
            first, deadline = next(iter(until.items()))
            if deadline > now:
                break
            del until[first]
        until[(key, depth)] = now + hold
        until.move_to_end((key, depth))
        if len(until) <= self.max_keys:
            return None
        (dropped, _), _ = until.popitem(last=False)
        self.dropped += 1
        return dropped

    def holds(self, key: Hashable, depth: int, now: float) -> bool:
        """Whether the layer at ``depth`` may still hold ``key``'s deleted value."""
        deadline = self._until.get((key, depth))
        if deadline is None:
            return False
        if deadline <= now:
            del self._until[(key, depth)]
            return False
        return True

    def confirm(self, key: Hashable, depth: int) -> None:
        """A delete or set of ``key`` reached the layer at ``depth``."""
        self._until.pop((key, depth), None)

    def confirm_layer(self, depth: int) -> None:
        """The layer at ``depth`` was cleared: nothing of it is held any more."""
        for mark in [mark for mark in self._until if mark[1] == depth]:
            del self._until[mark]


__all__ = ["MAX_KEYS", "UnconfirmedDeletes"]
