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

from __future__ import annotations

import argparse
import ast
import base64
import binascii
import json
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .core.writepolicy import DEFAULT_DEAD_LETTER_PATH, DeadLetterSink
from .core.writequeue import DeadWrite

try:
    import fcntl
except ImportError:  # Windows: in-process locking only
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import redis
    import redis.cluster

log = logging.getLogger("multilayercache.deadletter")

FORMAT_VERSION = 1
Encoding = Literal["base64", "json", "repr"]
Outcome = Literal["replayed", "kept", "expired"] | None
"""What a replay's ``write`` returns: ``None`` or ``"replayed"`` (done: dropped from the
file), ``"kept"`` (not for this writer: left in the file), ``"expired"`` (its lifetime is
over: nothing to write, dropped). Raising counts as a failure: kept. ``True`` / ``False``
are read as ``"replayed"`` / ``"kept"``."""


@dataclass(frozen=True)
class DeadLetterRecord:
    """One dead write, as written to and read back from a dead-letter file (see the module
    docstring for the fields). Build one with ``create`` or ``of``."""

    key: str
    op: str
    value: Any
    encoding: Encoding | None
    error_type: str
    error_message: str
    attempts: int
    time: str
    layer: str
    key_repr: bool = False
    store_key: str | None = None
    px: int | None = None
    expires_at: float | None = None

    @classmethod
    def create(
        cls,
        key: Any,
        op: str,
        value: Any,
        error: BaseException | str,
        attempts: int,
        layer: str,
        *,
        store_key: str | None = None,
        px: int | None = None,
        expires_at: float | None = None,
        at: datetime | None = None,
    ) -> DeadLetterRecord:
        """A record of a write of ``key`` (``value``: bytes for a Redis layer, the value for
        a persistence writer; ignored for a delete) that failed with ``error``."""
        if op not in ("set", "delete"):
            raise ValueError(f'op must be "set" or "delete", got {op!r}')
        text_key, key_repr = (key, False) if isinstance(key, str) else (repr(key), True)
        encoding: Encoding | None
        if op == "delete":
            value, encoding = None, None
        elif isinstance(value, (bytes, bytearray, memoryview)):
            value, encoding = bytes(value), "base64"
        elif _json_round_trips(value):
            encoding = "json"
        else:
            value, encoding = _safe_repr(value), "repr"
        if isinstance(error, BaseException):
            error_type, message = _type_name(error), str(error)
        else:
            error_type, message = "str", str(error)
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        return cls(
            key=text_key,
            op=op,
            value=value,
            encoding=encoding,
            error_type=error_type,
            error_message=message,
            attempts=attempts,
            time=moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            layer=layer,
            key_repr=key_repr,
            store_key=store_key,
            px=px,
            expires_at=expires_at,
        )

    @classmethod
    def of(cls, dead: DeadWrite, layer: str, **fields: Any) -> DeadLetterRecord:
        """The record of a ``DeadWrite`` (``WriteQueue``'s ``batch.dead``) of ``layer``.
        ``fields``: ``value`` (default: the write's payload), ``store_key``, ``px``,
        ``expires_at``, ``at``: what the layer knows of the payload it queued."""
        value = fields.pop("value", dead.payload)
        return cls.create(dead.key, dead.op, value, dead.error, dead.attempts, layer, **fields)

    def original_key(self) -> Any:
        """The cache key: ``key`` itself, or the literal its ``repr`` spells (``42``,
        ``('user', 1)``, ``b'k'``); ``ValueError`` for a repr that is no literal."""
        if not self.key_repr:
            return self.key
        try:
            return ast.literal_eval(self.key)
        except (ValueError, SyntaxError) as error:
            raise ValueError(f"key {self.key} is not a Python literal") from error

    def to_json(self) -> str:
        """The record as one JSON line (without the newline)."""
        value = self.value
        if self.encoding == "base64":
            value = base64.b64encode(value).decode("ascii")
        return json.dumps(
            {
                "time": self.time,
                "layer": self.layer,
                "op": self.op,
                "key": self.key,
                "key_repr": self.key_repr,
                "store_key": self.store_key,
                "attempts": self.attempts,
                "error": {"type": self.error_type, "message": self.error_message},
                "encoding": self.encoding,
                "value": value,
                "px": self.px,
                "expires_at": self.expires_at,
                "v": FORMAT_VERSION,
            },
            ensure_ascii=False,
            separators=(", ", ": "),
        )

    @classmethod
    def from_json(cls, line: str | bytes) -> DeadLetterRecord:
        """Parse one line; ``ValueError`` if it is not a dead-letter record."""
        try:
            data = json.loads(line)
            value = data["value"]
            if data["encoding"] == "base64":
                value = base64.b64decode(value, validate=True)
            error = data["error"]
            return cls(
                key=data["key"],
                op=data["op"],
                value=value,
                encoding=data["encoding"],
                error_type=error["type"],
                error_message=error["message"],
                attempts=data["attempts"],
                time=data["time"],
                layer=data["layer"],
                key_repr=data["key_repr"],
                store_key=data["store_key"],
                px=data["px"],
                expires_at=data["expires_at"],
            )
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            raise ValueError(f"not a dead-letter record: {error}") from error


class DeadLetter:
    """A dead-letter sink: appends records to a JSONL file (``path``; relative paths are
    resolved now, so a later ``chdir`` does not move it; ``None``: no file) and/or calls
    ``callback(record)`` for each. ``fsync`` (default on; dead letters are rare): a record
    is on disk when ``append`` returns.

    ``append`` tries every sink even when one fails, then raises the first error: the
    caller (the write-behind worker) logs it and goes on; the writes are then lost, and
    said so loudly. Thread-safe; blocking (file IO): call it from a worker thread, or
    through ``asyncio.to_thread`` from a task."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = DEFAULT_DEAD_LETTER_PATH,
        callback: Callable[[DeadLetterRecord], Any] | None = None,
        *,
        fsync: bool = True,
    ) -> None:
        if path is None and callback is None:
            raise ValueError("a dead letter needs a path, a callback, or both")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self.path = None if path is None else Path(path).absolute()
        self.callback = callback
        self.fsync = fsync
        self.appended = 0
        """Records taken so far (by the file or the callback)."""
        self._lock = threading.Lock()

    def append(self, records: Iterable[DeadLetterRecord]) -> None:
        """Keep ``records`` (see the class docstring)."""
        records = list(records)
        if not records:
            return
        failures: list[BaseException] = []
        taken = 0  # records that reached at least one sink
        if self.path is not None:
            data = "".join(record.to_json() + "\n" for record in records).encode()
            try:
                with self._lock:
                    _append_locked(self.path, data, self.fsync)
                taken = len(records)
            except OSError as error:
                failures.append(error)
                log.error("multilayercache: cannot write dead letters to %s: %s", self.path, error)
        if self.callback is not None:
            called = 0
            for record in records:
                try:
                    self.callback(record)
                    called += 1
                except Exception as error:
                    failures.append(error)
                    log.exception("multilayercache: the dead-letter callback failed")
            taken = max(taken, called)
        self.appended += taken
        first = records[0]
        log.warning(
            "multilayercache: %d write(s) of layer %r dead-lettered%s (key %s: %s: %s)",
            len(records),
            first.layer,
            f" to {self.path}" if self.path else "",
            first.key,
            first.error_type,
            first.error_message,
        )
        if failures:
            raise failures[0]

    def __repr__(self) -> str:
        return f"<DeadLetter {self.path or ''}{' + callback' if self.callback else ''}>"


class LogDeadLetters:
    """The sink of ``WriteBehind(dead_letter=None)``: nothing is kept, but every dead write
    is logged at ERROR (its key and error) and counted: never silent."""

    def __init__(self) -> None:
        self.appended = 0

    def append(self, records: Iterable[DeadLetterRecord]) -> None:
        for record in records:
            self.appended += 1
            log.error(
                "multilayercache: write lost (no dead-letter sink): layer %r %s %s: %s: %s",
                record.layer,
                record.op,
                record.key,
                record.error_type,
                record.error_message,
            )


def sink_for(option: str | os.PathLike[str] | DeadLetterSink | None) -> DeadLetterSink:
    """The sink a ``WriteBehind.dead_letter`` option names: a path becomes a ``DeadLetter``
    on it, a sink is used as is, ``None`` becomes ``LogDeadLetters``."""
    if option is None:
        return LogDeadLetters()
    if isinstance(option, (str, os.PathLike)):
        return DeadLetter(option)
    if isinstance(option, DeadLetterSink):
        return option
    raise TypeError(f"not a dead-letter path or sink: {option!r}")


# ----------------------------------------------------------------------------- reading
def read_dead_letters(
    path: str | os.PathLike[str], *, errors: Literal["raise", "skip"] = "raise"
) -> Iterator[DeadLetterRecord]:
    """The records of a dead-letter file, in the order they were written. A line that is
    not a record raises ``ValueError`` naming it (``errors="skip"``: skipped; a line torn
    by a crash mid-append is the usual one)."""
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                yield DeadLetterRecord.from_json(line)
            except ValueError as error:
                if errors == "raise":
                    raise ValueError(f"{path}, line {number}: {error}") from None


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did. ``kept_in``: where the records not replayed now are (``None``
    if none is left)."""

    replayed: int = 0
    """Records written (and dropped from the file)."""
    failed: int = 0
    """Records whose write raised (kept)."""
    kept: int = 0
    """Records the writer left alone (another layer's, say) (kept)."""
    expired: int = 0
    """Records whose lifetime was over: nothing to write (dropped)."""
    unreadable: int = 0
    """Lines that are not records (kept as they were)."""
    kept_in: Path | None = None
    errors: tuple[str, ...] = field(default=())
    """The first few failures, as ``"key: Type: message"``."""


MAX_REPORTED_ERRORS = 10


def replay(
    path: str | os.PathLike[str],
    write: Callable[[DeadLetterRecord], Outcome | bool],
    *,
    keep_to: str | os.PathLike[str] | None = None,
) -> ReplayReport:
    """Hand every record of the dead-letter file ``path`` to ``write`` (see ``Outcome``), in
    file order; append the records that failed or were kept, and unreadable lines, to
    ``keep_to`` (default: ``path``, which a live cache may have recreated meanwhile).

    The file is claimed first (renamed to ``PATH.replaying-PID-NS``) and deleted at the
    end. If the replay is interrupted, that claimed file remains: replay it in turn
    (``replay(claimed, write, keep_to=path)``); records written before the interruption are
    then written again (harmless for sets and deletes of the same values).
    ``FileNotFoundError`` if there is no file."""
    path = Path(path)
    target = Path(keep_to) if keep_to is not None else path
    claimed = path.with_name(f"{path.name}.replaying-{os.getpid()}-{time.time_ns()}")
    os.rename(path, claimed)
    lines = _read_locked(claimed)
    counts = dict.fromkeys(("replayed", "failed", "kept", "expired", "unreadable"), 0)
    errors: list[str] = []
    keep: list[bytes] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            record = DeadLetterRecord.from_json(line)
        except ValueError:
            counts["unreadable"] += 1
            keep.append(line if line.endswith(b"\n") else line + b"\n")
            continue
        try:
            outcome = write(record)
        except Exception as error:
            counts["failed"] += 1
            keep.append(line if line.endswith(b"\n") else line + b"\n")
            if len(errors) < MAX_REPORTED_ERRORS:
                errors.append(f"{record.key}: {_type_name(error)}: {error}")
            continue
        if outcome is None or outcome is True or outcome == "replayed":
            counts["replayed"] += 1
        elif outcome == "expired":
            counts["expired"] += 1
        elif outcome == "kept" or outcome is False:
            counts["kept"] += 1
            keep.append(line if line.endswith(b"\n") else line + b"\n")
        else:
            raise ValueError(f"write returned {outcome!r}: not a replay outcome")
    if keep:
        _append_locked(target, b"".join(keep), fsync=True)
    os.unlink(claimed)
    return ReplayReport(**counts, kept_in=target if keep else None, errors=tuple(errors))


def replay_into_redis(
    path: str | os.PathLike[str],
    client_or_url: str | redis.Redis | redis.cluster.RedisCluster,
    *,
    layer: str | None = None,
    only_missing: bool = False,
    key: Callable[[DeadLetterRecord], str] | None = None,
    keep_to: str | os.PathLike[str] | None = None,
) -> ReplayReport:
    """Replay a dead-letter file into Redis: ``SET store_key value`` (the layer's encoded
    bytes, byte for byte), with ``PX`` the lifetime left (from ``expires_at``, or the ``px``
    the write carried; a record already expired is skipped), and ``DEL`` for a delete.

    ``layer``: replay only that layer's records, keep the others. ``only_missing``:
    ``SET ... NX``, never overwrite a key a live cache wrote since (deletes are then kept
    for a human to decide). ``key(record)``: the Redis key (default ``store_key``, else a
    ``str`` key as is). A record that cannot go to Redis (a value that is not bytes: a
    persistence writer's) fails and is kept."""
    import redis as redis_module

    client: redis.Redis | redis.cluster.RedisCluster
    if isinstance(client_or_url, str):
        client, owned = redis_module.Redis.from_url(client_or_url), True
    else:
        client, owned = client_or_url, False

    def write(record: DeadLetterRecord) -> Outcome:
        if layer is not None and record.layer != layer:
            return "kept"
        if key is not None:
            redis_key = key(record)
        elif record.store_key is not None:
            redis_key = record.store_key
        elif not record.key_repr:
            redis_key = record.key
        else:
            raise ValueError("no store_key, and the key is not text: pass key=")
        if record.op == "delete":
            if only_missing:
                return "kept"
            client.delete(redis_key)
            return "replayed"
        if not isinstance(record.value, bytes):
            raise TypeError(f"the value is {record.encoding}, not bytes: not a Redis layer's")
        px = record.px
        if record.expires_at is not None:
            left = record.expires_at - time.time()
            if left <= 0:
                return "expired"
            px = max(1, math.ceil(left * 1000))
        client.set(redis_key, record.value, px=px or None, nx=only_missing)
        return "replayed"

    try:
        return replay(path, write, keep_to=keep_to)
    finally:
        if owned:
            client.close()


# ----------------------------------------------------------------------------- files
def _append_locked(path: Path, data: bytes, fsync: bool) -> None:
    """Append ``data`` to ``path`` under an exclusive ``flock``, in one ``write``. If the
    file was renamed away (a replay claimed it) between ``open`` and ``flock``, append to
    the new file at ``path`` instead: the replay may have read the old one already."""
    while True:
        fd = os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600
        )
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not _same_file(fd, path):
                    continue
            view = memoryview(data)
            while view:  # a regular file writes it all, but for a full disk or a signal
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
            return
        finally:
            os.close(fd)  # releases the flock


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _read_locked(path: Path) -> list[bytes]:
    """The lines of ``path``, read under its ``flock``: an append that began before the
    file was renamed finishes first, and later ones go to the new file."""
    with open(path, "rb") as file:
        if fcntl is not None:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        return file.readlines()


# ----------------------------------------------------------------------------- helpers
def _json_round_trips(value: Any) -> bool:
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError, RecursionError):
        return False


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as error:  # a broken __repr__ must not lose the record
        return f"<{_type_name(value)} object: repr failed: {error}>"


def _type_name(obj: object) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


# ----------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m multilayercache.deadletter replay FILE --redis URL [--layer NAME]
    [--only-missing]``: replay a dead-letter file into Redis and print the report."""
    parser = argparse.ArgumentParser(
        prog="python -m multilayercache.deadletter", description="Replay dead letters."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("replay", help="replay a dead-letter file into Redis")
    command.add_argument("file", type=Path)
    command.add_argument("--redis", required=True, help="redis://host:port/db")
    command.add_argument("--layer", help="replay only this layer's records")
    command.add_argument(
        "--only-missing", action="store_true", help="SET NX: never overwrite a key"
    )
    arguments = parser.parse_args(argv)
    try:
        report = replay_into_redis(
            arguments.file,
            arguments.redis,
            layer=arguments.layer,
            only_missing=arguments.only_missing,
        )
    except (OSError, ValueError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # redis errors: unreachable server and the like
        print(f"{parser.prog}: error: {_type_name(error)}: {error}", file=sys.stderr)
        return 2
    print(
        f"replayed {report.replayed}, expired {report.expired}, failed {report.failed}, "
        f"kept {report.kept}, unreadable {report.unreadable}"
        + (f"; left in {report.kept_in}" if report.kept_in else "")
    )
    for line in report.errors:
        print(f"  {line}")
    return 0 if not report.failed and not report.unreadable else 1


__all__ = [
    "DeadLetter",
    "DeadLetterRecord",
    "LogDeadLetters",
    "Outcome",
    "ReplayReport",
    "main",
    "read_dead_letters",
    "replay",
    "replay_into_redis",
    "sink_for",
]

if __name__ == "__main__":
    sys.exit(main())
