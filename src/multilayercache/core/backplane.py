"""What the backplane says and decides, without IO: the invalidation messages instances of
one fleet exchange, and whether an instance that lost its connection can replay what it
missed (``layers/redis/backplane.py`` does the IO).

Messages carry keys and actions, never values: ``keys`` (set, delete, add, incr, touch of
those keys: drop them from L1), ``clear`` (drop everything), and the ``origin`` of the
instance that sent them, which skips its own. They are entries of a Redis stream, so an
instance that was cut off reads on from the last entry it saw: the gap is replayed, and
only the keys that changed meanwhile leave its L1. When the gap cannot be replayed (the
stream was trimmed past that entry, or the server restarted and lost it), the instance
can no longer vouch for anything its L1 held before: it drops it all (``Resync``).

Every message is decoded as untrusted data: one that does not parse is skipped, counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import msgspec

Action = Literal["keys", "clear", "tags", "prefixes"]
ACTIONS: tuple[Action, ...] = ("keys", "clear", "tags", "prefixes")

MAX_KEYS_BYTES = 4 * 1024 * 1024
"""The largest list of keys a message may carry encoded (an instance sends at most 1,000
keys per entry): anyone who can write the stream must not make every instance decode a
huge one."""

_encode = msgspec.msgpack.Encoder().encode
_decode_keys = msgspec.msgpack.Decoder(list[str]).decode


def new_origin() -> bytes:
    """An id for one cache instance (one per process and cache, new after a fork)."""
    return os.urandom(8).hex().encode()


@dataclass(frozen=True)
class Message:
    """One invalidation: ``action`` by ``origin``, of ``keys`` (empty for ``clear``; tag
    or prefix names for ``tags`` and ``prefixes``, marked at ``at_ms``)."""

    origin: bytes
    action: Action
    keys: tuple[str, ...] = ()
    at_ms: int = 0

    def fields(self) -> dict[str, bytes]:
        """The stream entry's fields."""
        fields = {"o": self.origin, "a": self.action.encode(), "k": _encode(list(self.keys))}
        if self.at_ms:
            fields["t"] = str(self.at_ms).encode()
        return fields

    @classmethod
    def parse(cls, fields: dict[bytes, bytes]) -> Message | None:
        """The message in a stream entry's ``fields``; ``None`` if it is not one."""
        try:
            action = fields[b"a"].decode()
            if action not in ACTIONS:
                return None
            encoded = fields[b"k"]
            if len(encoded) > MAX_KEYS_BYTES:
                return None
            keys = tuple(_decode_keys(encoded))
            at_ms = int(fields.get(b"t", b"0"))
            return cls(bytes(fields[b"o"]), action, keys, at_ms)
        except (
            KeyError, ValueError, UnicodeDecodeError, msgspec.DecodeError,
            msgspec.ValidationError,
        ):  # fmt: skip
            return None


def batched(pending: list[Message], max_keys: int) -> list[Message]:
    """``pending`` messages of one origin merged into as few as possible, in order: runs of
    ``keys`` become one message (at most ``max_keys`` keys each, repeats dropped); others
    (``clear``, tag and prefix marks) stay as they are, in their place."""
    out: list[Message] = []
    run: dict[str, None] = {}

    def flush() -> None:
        keys = list(run)
        for start in range(0, len(keys), max_keys):
            out.append(Message(pending[0].origin, "keys", tuple(keys[start : start + max_keys])))
        run.clear()

    for message in pending:
        if message.action == "keys":
            run.update(dict.fromkeys(message.keys))
        else:
            flush()
            out.append(message)
    flush()
    return out


def stream_id(text: bytes | str) -> tuple[int, int]:
    """A stream entry id (``"1700000000000-3"``) as a comparable pair."""
    if isinstance(text, bytes):
        text = text.decode()
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


@dataclass(frozen=True)
class StreamState:
    """What the server says of the stream after a reconnect (``XINFO STREAM``, ``INFO``)."""

    exists: bool
    last_generated: tuple[int, int]
    """The newest id the stream ever gave (kept after trimming)."""
    max_deleted: tuple[int, int]
    """The newest id of an entry trimmed or deleted (``(0, 0)``: none)."""
    server_run: str
    """The server's ``run_id``: another after a restart."""


def can_replay(last_seen: tuple[int, int], seen_run: str, now: StreamState) -> bool:
    """Whether reading on after ``last_seen`` (read from the server run ``seen_run``)
    yields every entry added since: the same server run, the stream still there (or never
    written), no entry after ``last_seen`` trimmed away, and no id rewound (a failover to
    a replica that had not seen all of it)."""
    if now.server_run != seen_run:
        return False
    if not now.exists:
        return last_seen == (0, 0)
    return now.last_generated >= last_seen and now.max_deleted <= last_seen
