"""Replaying a dead-letter file into Redis without ever making a key older: each record is
written by one Lua script that compares it with the key's current value, atomically."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import redis
    import redis.cluster

from .files import check_replayable
from .records import DeadLetterRecord, _type_name
from .replay import BatchResult, ReplayReport, record_identity, replay_batches

TIMEOUT_SECONDS = 2.0
"""Connect and read timeout of a client built from a URL: a server that does not answer
fails the replay this soon (before anything is claimed, if it does not answer at all)."""
BATCH_SIZE = 500
"""Records per pipeline: the round trip amortized, one reply still quick to wait for."""

# KEYS[1]: the key. ARGV: the record's written_ms ("": unknown, older than any value),
# "set" or "delete", the value, PX ("": none), "skip" to leave an empty key empty. The
# current value's time is its envelope's written_ms (core/entry.py: 0x98 0x03 0xd3, or
# 0x9a 0x04 0xd3 in format 4, then a big-endian int64; formats 1 and 2 of older versions
# keep it at the same place); Lua numbers are doubles, exact
# for epoch milliseconds. Answers "replayed", "older" (the key holds something as new or
# newer: nothing written), "unknown" (a value without an envelope this version knows: its
# age cannot be told, nothing written) or "missing" (a set into an empty key, told to
# skip those).
COMPARE_AND_WRITE = """
local current = redis.call('GET', KEYS[1])
if current then
  if ARGV[1] == '' then return 'older' end
  local b1, b2, b3, b4 = string.byte(current, 1, 4)
  local known = (b1 == 0x98 and b2 == 0x03) or (b1 == 0x9a and b2 == 0x04)
    or (b1 == 0x97 and b2 == 0x01) or (b1 == 0x99 and b2 == 0x02)
  if #current < 11 or not known or b3 ~= 0xd3 or b4 > 0x7f then
    return 'unknown'
  end
  local written = 0
  for i = 4, 11 do written = written * 256 + string.byte(current, i) end
  if written >= tonumber(ARGV[1]) then return 'older' end
end
if ARGV[2] == 'delete' then
  if current then redis.call('DEL', KEYS[1]) end
elseif not current and ARGV[5] == 'skip' then
  return 'missing'
elseif ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 'replayed'
"""


def replay_into_redis(
    path: str | os.PathLike[str],
    client_or_url: str | redis.Redis | redis.cluster.RedisCluster,
    *,
    layer: str | None = None,
    only_missing: bool = False,
    skip_missing: bool = False,
    key: Callable[[DeadLetterRecord], str] | None = None,
    keep_to: str | os.PathLike[str] | None = None,
    cluster: bool = False,
    timeout: float = TIMEOUT_SECONDS,
) -> ReplayReport:
    """Replay a dead-letter file into Redis (see ``replay``: the latest record of each key
    only, claimed files of replays that died taken over) without making any key older.

    Each record is written by one Lua script, atomic with respect to live caches writing
    the same key: a set is stored (the layer's encoded bytes, byte for byte, with ``PX``
    the lifetime left) and a delete deletes, only if the record is newer than the key's
    current value (its envelope's ``written_ms``) or the key holds nothing; otherwise the
    record is ``older``: skipped. A set whose lifetime is over (``expired``) deletes an
    older current value, as the write would have when sent late. Cluster-safe: one key
    per script.

    * A record without ``written_ms`` (format version 1) counts as older than any value:
      it is written only where the key holds nothing (a delete is then a no-op).
    * A current value without an envelope (written before envelopes, or not by this
      library): its age is unknown, so it is not overwritten; the record is ``kept`` in
      the file for a human to decide.
    * A key that holds nothing gets the record: a value Redis lost (a restart without
      persistence) or never had (first written during the outage) is restored. So is one
      a live cache deleted after the record's write, since a delete leaves nothing to
      compare with: it comes back until its TTL or the key's next write.
      ``skip_missing``: never write into an empty key (such records are ``kept``): no
      deleted value comes back, and the cache loads the keys left empty again.
      ``only_missing``: the opposite, treat every record as version 1 (never overwrite or
      delete a value Redis holds).

    ``layer``: replay only that layer's records, keep the others. ``key(record)``: the
    Redis key (default ``store_key``, else a ``str`` key as is). A record that cannot go
    to Redis (a value that is not bytes: a persistence writer's) fails and is kept.

    ``client_or_url``: a client (its own timeouts apply), or a URL: a client with
    ``timeout`` seconds to connect and to answer, no retries, ``cluster``: a
    ``RedisCluster``. The server must answer a ``PING`` before the file is touched.
    Records the server did not confirm (it went away midway) are failed and kept."""
    if only_missing and skip_missing:
        raise ValueError("only_missing and skip_missing together would write nothing")
    path = Path(path)
    check_replayable(path)  # a directory, or nothing to replay: say so before connecting
    client, owned = _connected(client_or_url, cluster, timeout)
    try:
        writer = _RedisWriter(client, layer, only_missing, skip_missing, key)
        return replay_batches(
            path, writer.write, keep_to=keep_to, identity=writer.identity, batch_size=BATCH_SIZE
        )
    finally:
        if owned:
            client.close()


def _connected(
    client_or_url: Any, cluster: bool, timeout: float
) -> tuple[redis.Redis | redis.cluster.RedisCluster, bool]:
    """The client (and whether it is ours to close), once the server answered a ``PING``:
    else ``ConnectionError``, before the file is claimed, so that a replay against a dead
    or hung server changes nothing."""
    from redis.exceptions import RedisClusterException, RedisError

    client: Any = None
    owned = isinstance(client_or_url, str)
    try:
        client = _client(client_or_url, cluster, timeout)
        client.ping()
    except (RedisError, RedisClusterException) as error:
        if owned and client is not None:
            client.close()
        raise ConnectionError(
            f"Redis did not answer PING ({_type_name(error)}: {error}); "
            "nothing was replayed, the dead-letter file is as it was"
        ) from error
    return client, owned


def _client(client_or_url: Any, cluster: bool, timeout: float) -> Any:
    import redis as redis_module
    import redis.cluster
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    if not isinstance(client_or_url, str):
        if not isinstance(client_or_url, (redis_module.Redis, redis.cluster.RedisCluster)):
            raise TypeError(
                f"expected a Redis URL, a redis.Redis or a redis.cluster.RedisCluster, "
                f"got {client_or_url!r}"
            )
        return client_or_url
    if not timeout > 0:
        raise ValueError(f"timeout must be seconds > 0, got {timeout!r}")
    options = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),  # a replay that fails keeps its records: no retries
    }
    if cluster:
        return redis.cluster.RedisCluster.from_url(client_or_url, **options)
    return redis_module.Redis.from_url(client_or_url, **options)


class _RedisWriter:
    """The batch writer of ``replay_into_redis``: one pipeline of scripts per batch."""

    def __init__(
        self,
        client: Any,
        layer: str | None,
        only_missing: bool,
        skip_missing: bool,
        key: Callable[[DeadLetterRecord], str] | None,
    ) -> None:
        self.client = client
        self.layer = layer
        self.only_missing = only_missing
        self.if_missing = "skip" if skip_missing else "write"
        self.key = key
        self.sha: str | None = None
        self.gone: Exception | None = None
        """The error of the server going away midway: later batches are not tried."""

    def identity(self, record: DeadLetterRecord) -> Hashable:
        """Records of one Redis key supersede one another."""
        try:
            return (record.layer, self.redis_key(record))
        except Exception:  # no Redis key: the write says why
            return record_identity(record)

    def redis_key(self, record: DeadLetterRecord) -> str:
        if self.key is not None:
            return self.key(record)
        if record.store_key is not None:
            return record.store_key
        if not record.key_repr:
            return record.key
        raise ValueError("no store_key, and the key is not text: pass key=")

    def write(self, records: list[DeadLetterRecord]) -> list[BatchResult]:
        results: list[BatchResult] = [None] * len(records)
        scripts: list[tuple[int, str, tuple[Any, ...], bool]] = []
        for index, record in enumerate(records):
            try:
                prepared = self._prepare(record)
            except Exception as error:
                results[index] = error
                continue
            if isinstance(prepared, str):
                results[index] = prepared
            else:
                scripts.append((index, *prepared))
        if scripts:
            for (index, *_), answer in zip(scripts, self._run(scripts), strict=True):
                results[index] = answer
        return results

    def _prepare(
        self, record: DeadLetterRecord
    ) -> Literal["kept", "expired"] | tuple[str, tuple[Any, ...], bool]:
        """What to do with ``record``: an outcome at once, or the key, the script's
        arguments and whether the record has expired."""
        if self.layer is not None and record.layer != self.layer:
            return "kept"
        redis_key = self.redis_key(record)
        timed = record.written_ms is not None and not self.only_missing
        written = str(record.written_ms) if timed else ""
        if record.op == "delete":
            return redis_key, (written, "delete", "", "", ""), False
        if not isinstance(record.value, bytes):
            raise TypeError(f"the value is {record.encoding}, not bytes: not a Redis layer's")
        expires_at = record.expires_at
        if expires_at is None and record.px is not None and record.written_ms is not None:
            expires_at = (record.written_ms + record.px) / 1000
        px = record.px
        if expires_at is not None:
            px = math.ceil((expires_at - time.time()) * 1000)
        if px is not None and px <= 0:  # over: an older value must not be served either
            return (redis_key, (written, "delete", "", "", ""), True) if timed else "expired"
        px_argument = "" if px is None else px
        return redis_key, (written, "set", record.value, px_argument, self.if_missing), False

    def _run(self, scripts: list[tuple[int, str, tuple[Any, ...], bool]]) -> list[BatchResult]:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import NoScriptError, RedisError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if self.gone is not None:
            return [ConnectionError(f"not tried: Redis went away ({self.gone})")] * len(scripts)
        try:
            if self.sha is None:
                self.sha = self.client.script_load(COMPARE_AND_WRITE)
            answers = self._pipeline(scripts)
            lost = [n for n, answer in enumerate(answers) if isinstance(answer, NoScriptError)]
            if lost:  # the server (or a node) lost its scripts (a restart, SCRIPT FLUSH)
                self.sha = self.client.script_load(COMPARE_AND_WRITE)
                for n, answer in zip(lost, self._pipeline([scripts[n] for n in lost]), strict=True):
                    answers[n] = answer
        except (RedisConnectionError, RedisTimeoutError) as error:
            self.gone = error
            return [error] * len(scripts)
        except RedisError as error:
            return [error] * len(scripts)
        return [
            _result(answer, expired) for (*_, expired), answer in zip(scripts, answers, strict=True)
        ]

    def _pipeline(self, scripts: list[tuple[int, str, tuple[Any, ...], bool]]) -> list[Any]:
        pipeline = self.client.pipeline(transaction=False)
        for _, redis_key, arguments, _ in scripts:
            pipeline.execute_command("EVALSHA", self.sha, 1, redis_key, *arguments)
        answers: list[Any] = pipeline.execute(raise_on_error=False)
        return answers


def _result(answer: Any, expired: bool) -> BatchResult:
    if isinstance(answer, Exception):
        return answer
    if answer in (b"replayed", "replayed"):
        return "expired" if expired else "replayed"
    if answer in (b"older", "older"):
        return "older"
    if answer in (b"unknown", "unknown", b"missing", "missing"):
        return "kept"
    return RuntimeError(f"unexpected answer from the replay script: {answer!r}")
