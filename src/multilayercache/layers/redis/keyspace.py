"""Writes by other programs: ``Backplane(track_external_writes=True)`` drops from L1 every
key that anything writes or deletes under the prefix in Redis, this cache or not.

Other programs do not announce their writes on the backplane, so the server has to: its
keyspace notifications (``notify-keyspace-events`` with ``K``, ``$`` and ``g``, set here if
the server allows ``CONFIG SET``, else a clear error) publish an event for every write of
a key, which a thread of the backplane receives (``PSUBSCRIBE`` on the prefix) and turns
into an L1 drop, as a message from another instance would be.

What it costs: an event per write of every key under the prefix, to every instance; and
this instance's own writes come back to it too, so each costs it an L1 miss (the next read
goes to Redis). Pub/sub keeps nothing for a subscriber that was cut off: after a broken
connection, the instance cannot tell what changed meanwhile, and drops its whole L1.
Expiry events are not changes (the value did not change; L1 keeps its own, shorter TTL).
One server only: a cluster publishes keyspace events on each node separately.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis
from redis.exceptions import RedisError, ResponseError

log = logging.getLogger("multilayercache.backplane")

NEEDED_FLAGS = "K$g"
"""Keyspace events (K) of string commands ($: SET, SETRANGE, ...) and generic ones (g: DEL,
RENAME, RESTORE, ...)."""
NOT_CHANGES = frozenset({"expire", "expired", "persist", "evicted", "new"})
"""Events that do not change a key's value (a TTL set or run out, a key evicted)."""
INTERNAL_INFIX = "__mlc:"
"""Keys of the cache's own bookkeeping under the prefix (the stream, marks, leases)."""
RETRY_SECONDS = (0.05, 0.1, 0.2, 0.5, 1.0)


def glob_escaped(prefix: str) -> str:
    """``prefix`` with the characters a Redis glob pattern treats specially escaped."""
    return "".join(f"\\{char}" if char in "*?[]\\" else char for char in prefix)


def enable_notifications(client: redis.Redis) -> None:
    """Make sure the server publishes the keyspace events this needs; ``ValueError`` when
    they are off and it may not turn them on."""
    try:
        current = str(client.config_get("notify-keyspace-events").get("notify-keyspace-events", ""))
        covered = set(current) | (set("$g") if "A" in current else set())
        missing = "".join(flag for flag in NEEDED_FLAGS if flag not in covered)
        if missing:
            client.config_set("notify-keyspace-events", current + missing)
    except ResponseError as refused:
        raise ValueError(
            "track_external_writes needs the server's keyspace notifications "
            f"(notify-keyspace-events with {NEEDED_FLAGS!r}), and this user may not turn them "
            f"on ({refused}): set them in the server's configuration"
        ) from None


class ExternalWrites:
    """A thread that turns keyspace events under ``prefix`` into ``on_keys`` calls (see
    the module docstring); ``on_lost`` when events may have been missed."""

    def __init__(
        self,
        connect: Callable[[], redis.Redis],
        prefix: str,
        on_keys: Callable[[tuple[str, ...]], None],
        on_lost: Callable[[str], None],
        closed: threading.Event,
    ) -> None:
        self._connect = connect
        self._prefix = prefix
        self._on_keys = on_keys
        self._on_lost = on_lost
        self._closed = closed
        self.events = 0
        """Changes of keys received so far."""
        self._client: redis.Redis | None = None

    def start(self) -> threading.Thread:
        client = self._connect()
        enable_notifications(client)
        pubsub = self._subscribe(client)
        thread = threading.Thread(
            target=self._run, args=(pubsub,), name="mlc-backplane-keyspace", daemon=True
        )
        thread.start()
        return thread

    def _subscribe(self, client: redis.Redis) -> Any:
        # The client must live as long as its subscription: a client built from a url
        # closes its pool, the subscription's connection with it, when it is collected.
        self._client = client
        db = client.connection_pool.connection_kwargs.get("db", 0)
        self._channel_start = len(f"__keyspace@{db}__:") + len(self._prefix)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        pubsub.psubscribe(f"__keyspace@{db}__:{glob_escaped(self._prefix)}*")
        return pubsub

    def _run(self, pubsub: Any) -> None:
        attempt = 0
        while not self._closed.is_set():
            try:
                message = pubsub.get_message(timeout=1.0)
            except RedisError as error:
                pubsub.close()
                self._on_lost(f"keyspace events missed while disconnected ({error})")
                pubsub = self._resubscribe(attempt)
                attempt += 1
                continue
            attempt = 0
            if message is not None and message.get("type") == "pmessage":
                self._deliver(message["channel"], message["data"])
        pubsub.close()

    def _resubscribe(self, attempt: int) -> Any:
        while not self._closed.is_set():
            self._closed.wait(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
            try:
                return self._subscribe(self._connect())
            except RedisError:
                attempt += 1
        return _Closed()

    def _deliver(self, channel: bytes, event: bytes) -> None:
        if event.decode(errors="replace") in NOT_CHANGES:
            return
        try:
            key = channel[self._channel_start :].decode()
        except UnicodeDecodeError:  # not a key this cache wrote: it holds none like it
            return
        if key.startswith(INTERNAL_INFIX):
            return
        self.events += 1
        try:
            self._on_keys((key,))
        except Exception:
            log.exception("backplane: dropping %r after a keyspace event failed", key)


class _Closed:
    """What ``_resubscribe`` returns when the backplane closed meanwhile."""

    def get_message(self, timeout: float) -> None:
        return None

    def close(self) -> None:
        return None


__all__ = ["ExternalWrites", "enable_notifications", "glob_escaped"]
