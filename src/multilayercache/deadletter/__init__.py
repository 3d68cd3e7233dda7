"""Dead letters: the writes a write-behind queue gave up on (a non-retryable error, or the
retry budget spent), kept so that an operator can see them and replay them.

``DeadLetter(path, callback)`` appends one JSON line per write to ``path`` and/or passes each
record to ``callback`` (an alert, a metric, a queue of your own). ``read_dead_letters(path)``
reads a file back; ``replay(path, write)`` hands the latest record of each key to ``write``
and keeps the ones that still fail; ``replay_into_redis(path, url)`` writes them into Redis,
never over a newer value::

    python -m multilayercache.deadletter replay multilayercache-dead-letters.jsonl \\
        --redis redis://127.0.0.1:6379/0 --layer redis

A line (one per write; fields always present, ``null`` when not known)::

    {"time": "2025-05-01T12:00:00.123Z", "layer": "redis", "op": "set",
     "key": "user:1", "key_repr": false, "store_key": "app:user:1", "attempts": 12,
     "error": {"type": "multilayercache.core.errors.LayerError", "message": "..."},
     "encoding": "base64", "value": "gqF2AQ==", "px": 300000,
     "expires_at": 1746100800.123, "written_ms": 1746100500123, "v": 2}

* ``key``: the cache key, as is when it is a ``str``; any other key as its ``repr`` with
  ``key_repr: true`` (``DeadLetterRecord.original_key()`` turns literals such as ``42`` or
  ``('user', 1)`` back). ``store_key``: the key as the layer stores it (the Redis key,
  prefix included), what a replay writes to.
* ``op``: ``"set"`` or ``"delete"``; a line with any other op is refused, never guessed at.
* ``value`` (``null`` for a delete), by ``encoding``: ``"base64"`` for bytes (a Redis layer's
  encoded envelope, replayed byte for byte); ``"json"`` for a value that JSON round-trips
  exactly (a persistence writer's value); else ``"repr"``, its ``repr``, for a human to read
  (it cannot be replayed as is).
* ``px``: the expiry in milliseconds the write carried (relative, as queued);
  ``expires_at``: when it expires (Unix seconds), if the layer said. A replay prefers
  ``expires_at`` (what is left of the lifetime).
* ``written_ms``: when the write was made, as the cache acknowledged it (Unix epoch ms, the
  clock of the process that made it; for a Redis set, its envelope's ``written_ms``; a
  Redis delete is stamped when it is made). ``null`` when not known: a persistence
  writer's record. Version-1 lines have no such field: they are read with ``null``.
* ``time`` (ISO 8601, UTC) the write was given up; ``attempts`` the sends its batch made;
  ``error`` the last error; ``v`` the format version (2; 1 is still read, a newer one is
  refused).

Appends are safe from threads, from processes sharing a file (gunicorn workers) and across
``fork()``: each append holds a lock (a ``threading.Lock`` and ``flock``), writes its lines
in one ``write`` on an ``O_APPEND`` descriptor and ``fsync``s before it returns; a child
forked mid-append closes what it inherited, so it holds no lock of its parent's. The file
is opened per append (dead letters are rare): it is created only when the first write
fails for good, with mode 0600 (it holds cached values), and it may be moved away at any
time.

What a replay does:

* It claims the file: takes its lock, renames it to ``FILE.replaying-PID-NS`` and holds the
  lock until it is done, so writes that go dead meanwhile land in a new file and none is
  lost or replayed twice. A directory is refused (nothing renamed). ``replay_into_redis``
  first checks that the server answers (a client built from a URL has 2 s timeouts and no
  retries): a dead or hung server fails the replay before the file is touched.
* Of the records of one key only the latest is written (the latest ``written_ms``; one
  without it counts as older than any with it; the later line among equals): the others
  are ``superseded``, dropped. A delete is replayed as a delete.
* Into Redis, each record is one Lua script, atomic with respect to live caches writing the
  key and cluster-safe (one key): it writes only if the record is newer than the key's
  current value (its envelope's ``written_ms``), else the record is ``older``: skipped. A
  set whose lifetime is over is ``expired``, and deletes an older current value. A record
  without ``written_ms`` fills only an empty key. A current value without an envelope (its
  age unknown) is left alone, and the record ``kept``. A key that holds nothing gets the
  record, also one a live cache deleted after the record was made (a delete leaves nothing
  to compare with); ``--skip-missing`` never writes into an empty key instead.
* Records that fail, are kept, or lines that are not records (torn, unknown op, newer
  version) are appended back to ``FILE``; the claimed file is deleted only after that. If
  the server goes away midway, the records not confirmed are failed and kept, and no
  further batch waits for a timeout.
* A replay that dies (killed, power loss) leaves its claimed file; running the same command
  again takes over claimed files whose lock is free (not those of a replay still running)
  and replays them with ``FILE``. Replays run twice, or interrupted and run again, end in
  the same state: what was written is not newer the second time.
* The report (and the command's output) counts every record: replayed, superseded,
  older-skipped, expired, failed, kept, unreadable. The command exits 1 if a record failed
  or a line was unreadable, 2 if nothing could be replayed.
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
