"""A write-behind batch packed into the arguments of one script call (pure twin of
``write_batch.pyx``; the script and why it exists: ``layers/redis/writebatch.py``).

``pack_writes(writes, now)`` turns encoded writes (``PackedWrite``: Redis key, data or
``None`` for a delete, milliseconds, deadline, written ms, only-if-newer) into four byte
strings and a count:

* the keys, each as UTF-8 followed by a NUL byte;
* the values of the sets, end to end;
* per write, its value's length (little-endian int32; ``DELETE`` for a delete);
* per write, its deadline (little-endian double, Unix seconds; ``NO_EXPIRY`` for none): the
  deadline it was encoded with, or ``now`` plus its lifetime when it has none;
* how many writes are sets.

``None`` when the batch cannot go this way: a write only over an older value
(``only_if_newer``: the compare-and-write script, key by key), or a key holding a NUL
character (the keys are NUL-terminated).

The common batch (sets only, every one with a deadline or none) is packed by loops in C
over the whole batch (``map``, ``join``, ``struct.pack``); any other, write by write.
"""

from __future__ import annotations

import struct
from operator import attrgetter
from typing import Any

NO_EXPIRY = 0.0
"""A write's deadline when it has none."""

DELETE = -1
"""A write's value length when it is a delete."""

_KEY = attrgetter("redis_key")
_DATA = attrgetter("data")
_EXPIRES_AT = attrgetter("expires_at")
_MILLISECONDS = attrgetter("milliseconds")
_ONLY_IF_NEWER = attrgetter("only_if_newer")

Packed = tuple[bytes, bytes, bytes, bytes, int]


def pack_writes(writes: list[Any], now: float) -> Packed | None:
    """The keys, values, value lengths and deadlines of ``writes``, and how many are sets;
    ``None`` for a batch that must go as commands."""
    if any(map(_ONLY_IF_NEWER, writes)):
        return None
    keys = "\0".join(map(_KEY, writes)) + "\0"
    if keys.count("\0") != len(writes):
        return None
    encoded = keys.encode()
    return _sets(writes, encoded) or _mixed(writes, now, encoded)


def _sets(writes: list[Any], keys: bytes) -> Packed | None:
    """The common batch, in whole-batch steps; ``None`` for any other."""
    count = len(writes)
    values = list(map(_DATA, writes))
    deadlines = list(map(_EXPIRES_AT, writes))
    try:  # a delete (None) in values or deadlines raises: rarer than a check costs
        packed_values = b"".join(values)
        value_lengths = struct.pack(f"<{count}i", *map(len, values))
    except TypeError:
        return None
    try:
        packed_deadlines = struct.pack(f"<{count}d", *deadlines)
    except struct.error:  # no deadline: none at all, or a lifetime counted from now
        if deadlines.count(None) != count or list(map(_MILLISECONDS, writes)).count(None) != count:
            return None
        packed_deadlines = struct.pack(f"<{count}d", *[NO_EXPIRY] * count)
    return keys, packed_values, value_lengths, packed_deadlines, count


def _mixed(writes: list[Any], now: float, keys: bytes) -> Packed:
    """Write by write: deletes, sets with and without a deadline."""
    values, value_lengths, deadlines = [], [], []
    for write in writes:
        data = write.data
        if data is None:
            value_lengths.append(DELETE)
            deadlines.append(NO_EXPIRY)
            continue
        values.append(data)
        value_lengths.append(len(data))
        if write.expires_at is not None:
            deadlines.append(write.expires_at)
        elif write.milliseconds is not None:  # a lifetime without a deadline: from now
            deadlines.append(now + write.milliseconds / 1000)
        else:
            deadlines.append(NO_EXPIRY)
    count = len(writes)
    return (
        keys,
        b"".join(values),
        struct.pack(f"<{count}i", *value_lengths),
        struct.pack(f"<{count}d", *deadlines),
        len(values),
    )


__all__ = ["DELETE", "NO_EXPIRY", "pack_writes"]
