"""Reading a dead-letter file back, and replaying it (into any writer, or into Redis)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import redis
    import redis.cluster

from .files import _append_locked, _read_locked
from .records import DeadLetterRecord, Outcome, _type_name


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
