"""Dead letters: the writes a write-behind queue gave up on (a non-retryable error, or the
retry budget spent), kept so that an operator can see them and replay them.

``DeadLetter(path, callback)`` appends one JSON line per write to ``path`` and/or passes each
record to ``callback`` (an alert, a metric, a queue of your own). ``read_dead_letters(path)``
reads a file back; ``replay(path, write)`` hands every record to ``write`` and keeps the ones
that still fail; ``replay_into_redis(path, url)`` is that with a Redis ``SET`` / ``DEL``::

    python -m multilayercache.deadletter replay multilayercache-dead-letters.jsonl \\
        --redis redis://127.0.0.1:6379/0 --layer redis

A line (one per write; fields always present, ``null`` when not known)::

    {"time": "2025-05-01T12:00:00.123Z", "layer": "redis", "op": "set",
     "key": "user:1", "key_repr": false, "store_key": "app:user:1", "attempts": 12,
     "error": {"type": "multilayercache.core.errors.LayerError", "message": "..."},
     "encoding": "base64", "value": "gqF2AQ==", "px": 300000,
     "expires_at": 1746100800.123, "v": 1}

* ``key``: the cache key, as is when it is a ``str``; any other key as its ``repr`` with
  ``key_repr: true`` (``DeadLetterRecord.original_key()`` turns literals such as ``42`` or
  ``('user', 1)`` back). ``store_key``: the key as the layer stores it (the Redis key,
  prefix included), what a replay writes to.
* ``value`` (``null`` for a delete), by ``encoding``: ``"base64"`` for bytes (a Redis layer's
  encoded envelope, replayed byte for byte); ``"json"`` for a value that JSON round-trips
  exactly (a persistence writer's value); else ``"repr"``, its ``repr``, for a human to read
  (it cannot be replayed as is).
* ``px``: the expiry in milliseconds the write carried (relative, as queued);
  ``expires_at``: when it expires (Unix seconds), if the layer said. A replay prefers
  ``expires_at`` (what is left of the lifetime) and skips a record whose time has passed.
* ``time`` (ISO 8601, UTC) the write was given up; ``attempts`` the sends its batch made;
  ``error`` the last error; ``v`` the format version.

Appends are safe from threads and from processes sharing a file (gunicorn workers): each
append holds a lock (a ``threading.Lock`` and ``flock``), writes its lines in one ``write``
on an ``O_APPEND`` descriptor and ``fsync``s before it returns. The file is opened per append
(dead letters are rare): it is created only when the first write fails for good, with mode
0600 (it holds cached values), and it may be moved away at any time.

A replay claims the file by renaming it, then reads it under its lock, so writes that go
dead meanwhile land in a new file and none is lost or replayed twice; the records that still
fail (and lines that cannot be parsed) are appended back to the original path, and the
claimed copy is deleted at the end. Replaying is redoing old writes: a key written since by
a live cache is overwritten with the older value, unless you ask for ``only_missing``.
"""

from .cli import main
from .into_redis import replay_into_redis
from .records import FORMAT_VERSION, DeadLetterRecord, Encoding, Outcome
from .replay import ReplayReport, read_dead_letters, replay, replay_batches
from .sinks import DeadLetter, LogDeadLetters, sink_for

__all__ = [
    "FORMAT_VERSION",
    "DeadLetter",
    "DeadLetterRecord",
    "Encoding",
    "LogDeadLetters",
    "Outcome",
    "ReplayReport",
    "main",
    "read_dead_letters",
    "replay",
    "replay_batches",
    "replay_into_redis",
    "sink_for",
]
