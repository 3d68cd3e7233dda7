"""``Backplane``: the instances of a fleet tell each other which keys changed, so that no L1
keeps serving a value another instance replaced or deleted in the shared layer.

    cache = MultilayerCache([l1, l2], backplane=True)          # the L2's server
    cache = MultilayerCache([l1, l2], backplane="redis://bus:6379/0")
    cache = MultilayerCache([l1, l2], backplane=Backplane(url, max_cut_off=30))

Transport: one Redis stream per key prefix (``PREFIX__mlc:backplane``), written with
``XADD`` (trimmed to about ``stream_length`` entries) and read with a blocking ``XREAD``.
A stream rather than pub/sub because a stream keeps what was said: an instance that was
cut off reads on from the last entry it saw, so only the keys that changed meanwhile leave
its L1, where a pub/sub subscriber (FusionCache's backplane, Redis client tracking,
cashews) must throw its whole L1 away or serve stale values. Blocking ``XREAD`` answers as
soon as an entry arrives, so delivery takes one hop, as pub/sub does. When the gap cannot
be replayed (the stream trimmed past it, the server restarted), the instance drops every
L1 entry it held (``core/backplane.py``: ``can_replay``). A ``clear`` of the prefix keeps
the stream (``codec.STREAM_SUFFIX``: why) and announces itself on it.

While cut off, an instance serves what its L1 holds (fail-safe); ``max_cut_off`` seconds
bounds that: cut off longer, it drops its L1 once and reads below it until it is back.

On a Redis Cluster (the shared layer's ``RedisLayer(url, cluster=True)``, a
``redis.cluster.RedisCluster`` client, or a url of any node: a cluster is detected) the
stream is one key, so it lives on the one node that owns its hash slot, and that node
carries all the backplane's traffic (one XADD per batch of writes, one blocking XREAD per
instance): small next to the cache's own reads and writes, which spread over every node.
Both threads use a cluster client, which follows the stream when its slot moves or its
node fails over. ``run_id`` is read from the node that owns the stream: a failover makes
its replica the owner, with another ``run_id``, so every instance drops its L1 (the
replica may have missed the last entries: asynchronous replication), as after a restart.
No key uses a hash tag: the stream is one key, and every cached key is written by
commands (and scripts) that touch that one key only, so no two keys ever need to share a
slot; a hash tag would only pin keys to one node.

Two threads per cache (one publishing, one reading), each with a connection of its own,
for sync and asyncio caches alike: the work is a blocking read and a queue, and L1 is
thread-safe. Writes are queued and sent in batches (a burst of sets is one ``XADD`` per
thousand keys); the caller never waits for them.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, cast

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry

from ... import shutdown
from ..._forking import register_after_fork
from ...core.backplane import Message, StreamState, batched, can_replay, new_origin, stream_id
from .codec import STREAM_SUFFIX
from .companions import companion_of
from .keyspace import ExternalWrites

log = logging.getLogger("multilayercache.backplane")

DEFAULT_STREAM_LENGTH = 100_000
"""Entries kept: a gap shorter than this many batches is replayed."""
MAX_KEYS_PER_ENTRY = 1_000
READ_BLOCK_SECONDS = 1.0
RETRY_SECONDS = (0.05, 0.1, 0.2, 0.5, 1.0)
_CLOSE = object()

Client = redis.Redis | redis.cluster.RedisCluster
"""A client of the stream's server: one server, or a cluster."""

StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]
"""What XREAD answers: each stream read, with its entries (id, fields)."""


class Backplane:
    """Invalidation messages between the instances that share a shared layer's prefix (see
    the module docstring). ``url`` or ``client``: the server of the stream (by default the
    shared layer's; a cluster's url or a ``redis.cluster.RedisCluster`` too).
    ``max_cut_off``: seconds an instance cut off from the backplane keeps serving its L1
    (``None``: until it is back; it then replays or drops what it missed).
    ``track_external_writes``: also drop from L1 what other programs write or delete in
    Redis under the prefix, by the server's keyspace notifications (``keyspace.py``: its
    costs, and why it needs ``CONFIG SET`` or the server's configuration)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Client | None = None,
        stream_length: int = DEFAULT_STREAM_LENGTH,
        max_cut_off: float | None = None,
        track_external_writes: bool = False,
    ) -> None:
        if url is not None and client is not None:
            raise ValueError("give a url or a client, not both")
        if type(stream_length) is not int or stream_length < 100:
            raise ValueError(f"stream_length must be an int >= 100, got {stream_length!r}")
        if max_cut_off is not None and not max_cut_off > 0:
            raise ValueError(f"max_cut_off must be > 0 seconds or None, got {max_cut_off!r}")
        self.url = url
        self._client = client
        self.track_external_writes = bool(track_external_writes)
        self._keyspace: ExternalWrites | None = None
        self._on_cluster: bool | None = None
        """Whether ``url`` is a cluster's (asked at the first connect)."""
        self.stream_length = stream_length
        self.max_cut_off = max_cut_off
        self.stream = ""
        self.origin = new_origin()
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._on_keys: Callable[[tuple[str, ...]], None] = _nothing
        self._on_clear: Callable[[], None] = _nothing_at_all
        self._on_marks: Callable[[tuple[str, ...], tuple[str, ...], int], None] = _no_marks
        self._listeners: list[Callable[[tuple[str, ...] | None], None]] = []
        self.counts = dict.fromkeys(
            ("published", "received", "malformed", "replayed_gaps", "dropped_l1", "lost"), 0
        )
        self.cut_off_since: float | None = None
        """When the reading connection broke (monotonic seconds); ``None`` while connected."""
        register_after_fork(self)

    # ---------------------------------------------------------------- wiring
    def start(
        self,
        prefix: str,
        on_keys: Callable[[tuple[str, ...]], None],
        on_clear: Callable[[], None],
        on_marks: Callable[[tuple[str, ...], tuple[str, ...], int], None] | None = None,
        default_url: str | None = None,
        default_client: Any = None,
    ) -> None:
        """Begin: messages for ``prefix`` call ``on_keys`` (keys another instance changed),
        ``on_clear`` (drop everything) and ``on_marks`` (tags, prefixes, when: see
        ``core/tags.py``); ``default_url`` (else ``default_client``, the shared layer's, when
        it is a sync redis-py client) when none was given."""
        if self._threads:
            raise RuntimeError("this Backplane is in use by a cache already: give each its own")
        if self.url is None and self._client is None:
            if default_url is not None:
                self.url = default_url
            elif isinstance(default_client, (redis.Redis, redis.cluster.RedisCluster)):
                self._client = default_client
            else:
                raise ValueError(
                    "backplane=True needs a shared layer built from a url or a sync redis-py "
                    "client: give Backplane(url) otherwise"
                )
        self.stream = prefix + STREAM_SUFFIX
        self._on_keys, self._on_clear = on_keys, on_clear
        self._on_marks = on_marks or _no_marks
        # A process that ends (SIGTERM, or a normal exit with the threads still running)
        # first sends what it announced: the others would otherwise keep the old values.
        shutdown.watch(self)
        atexit.register(_flush_at_exit, weakref.ref(self))
        reader = self._connect()
        position, run = self._position(reader)  # before any write of ours: none is missed
        if self.track_external_writes:
            if not isinstance(reader, redis.Redis):
                raise ValueError("track_external_writes works on one server, not a cluster yet")
            # On one server (checked just above) ``_connect`` makes a ``redis.Redis``.
            connect_one = cast("Callable[[], redis.Redis]", self._connect)
            self._keyspace = ExternalWrites(
                connect_one, prefix, self._changed_outside, self._drop_l1, self._closed
            )
        self._launch(reader, position, run)

    def _launch(self, reader: Client, position: tuple[int, int] | None, run: str) -> None:
        self._threads = [
            threading.Thread(
                target=self._read, args=(reader, position, run), name="mlc-backplane-read"
            ),
            threading.Thread(target=self._publish, name="mlc-backplane-publish"),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()
        if self._keyspace is not None:
            self._threads.append(self._keyspace.start())

    def listen(self, listener: Callable[[tuple[str, ...] | None], None]) -> None:
        """Also call ``listener(keys)`` for every message of another instance, once it was
        applied to L1: with the keys it names, or ``None`` when anything may have changed
        (a clear, or L1 dropped after a gap). It runs on the reading thread: it must be
        quick and must not block (a fleet single flight wakes its waiters with it)."""
        self._listeners.append(listener)

    def publish_keys(self, keys: list[str]) -> None:
        """Tell the others that ``keys`` changed (queued: the caller does not wait)."""
        if keys and self._threads:
            self._outbox.put(Message(self.origin, "keys", tuple(keys)))

    def publish_marks(
        self, tags: tuple[str, ...], prefixes: tuple[str, ...], at_ms: int | None
    ) -> None:
        """Tell the others that ``tags`` and ``prefixes`` were invalidated at ``at_ms``
        (``None``: now)."""
        if not self._threads:
            return
        at_ms = at_ms or time.time_ns() // 1_000_000
        if tags:
            self._outbox.put(Message(self.origin, "tags", tuple(tags), at_ms))
        if prefixes:
            self._outbox.put(Message(self.origin, "prefixes", tuple(prefixes), at_ms))

    def publish_clear(self) -> None:
        """Tell the others to drop their whole L1."""
        if self._threads:
            self._outbox.put(Message(self.origin, "clear"))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every message queued so far was sent (True) or ``timeout`` passed."""
        done = threading.Event()
        self._outbox.put(done)
        return done.wait(timeout)

    def close_blocking(self, timeout: float | None = None) -> bool:
        """At shutdown (``multilayercache.shutdown``): send what is queued, within
        ``timeout`` (2 s by default); True if all of it went."""
        return not self._threads or self.flush(2.0 if timeout is None else timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (within ``timeout``), then stop both threads."""
        if not self._threads:
            return
        self.flush(timeout)
        self._closed.set()
        self._outbox.put(_CLOSE)
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def stats(self) -> dict[str, Any]:
        """Messages published and received (counted once applied to L1), malformed ones
        skipped, gaps replayed, times L1 was dropped (a gap that could not be replayed, or
        ``max_cut_off``), messages lost (not sent after every retry), and how long it has
        been cut off (seconds)."""
        cut_off = self.cut_off_since
        return {
            **self.counts,
            "cut_off_for": 0.0 if cut_off is None else time.monotonic() - cut_off,
        }

    # ---------------------------------------------------------------- threads
    def _connect(self) -> Client:
        """A client of the stream's own (one per thread): a blocking XREAD holds its
        connection. A cluster client on a cluster (see the module docstring)."""
        # No retries of redis-py's own: a broken connection must reach ``_reconnect``, which
        # decides whether the gap can be replayed (a retry that reconnected quietly would
        # hide a restart or a failover behind it).
        timeouts: dict[str, Any] = {
            "socket_timeout": READ_BLOCK_SECONDS + 2,
            "socket_connect_timeout": 1.0,
            "retry": Retry(NoBackoff(), 0),
        }
        if isinstance(self._client, redis.cluster.RedisCluster):
            startup = [
                redis.cluster.ClusterNode(node.host, node.port) for node in self._client.get_nodes()
            ]
            kwargs = self._client.get_default_node().redis_connection.connection_pool
            return redis.cluster.RedisCluster(
                startup_nodes=startup, **_credentials(kwargs.connection_kwargs), **timeouts
            )
        if self._client is not None:
            kwargs = dict(self._client.connection_pool.connection_kwargs)
            kwargs.pop("connection_class", None)
            return redis.Redis(**{**kwargs, **timeouts})
        assert self.url is not None
        client = redis.Redis.from_url(self.url, **timeouts)
        if self._on_cluster is None:  # asked once; unreachable now: asked again next time
            try:
                self._on_cluster = client.info("cluster").get("cluster_enabled") == 1
            except RedisError:
                return client
        if self._on_cluster:
            client.close()
            return redis.cluster.RedisCluster.from_url(self.url, **timeouts)
        return client

    def _state(self, client: Client) -> StreamState:
        if isinstance(client, redis.cluster.RedisCluster):  # the node that owns the stream
            owner = client.get_node_from_key(self.stream)
            run = str(client.info("server", target_nodes=owner).get("run_id", ""))
        else:
            run = str(client.info("server").get("run_id", ""))
        try:
            info = client.xinfo_stream(self.stream)
        except ResponseError:  # no such key
            return StreamState(False, (0, 0), (0, 0), run)
        return StreamState(
            True,
            stream_id(info["last-generated-id"]),
            stream_id(info.get("max-deleted-entry-id", b"0-0")),
            run,
        )

    def _position(self, client: Client) -> tuple[tuple[int, int], str]:
        state = self._state(client)
        return (state.last_generated if state.exists else (0, 0)), state.server_run

    def _read(self, client: Client, position: tuple[int, int] | None, run: str) -> None:
        """Read the stream from ``position`` on (``None``: from its end, once the server
        answers), until closed; after a broken connection, replay the gap or drop L1 (see
        ``can_replay``)."""
        block_ms = int(READ_BLOCK_SECONDS * 1000)
        attempt = 0
        while position is None and not self._closed.is_set():
            try:
                position, run = self._position(client)
                self.cut_off_since = None
            except RedisError:
                self._closed.wait(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
                attempt += 1
        if position is None:
            return
        while not self._closed.is_set():
            try:
                # redis-py types replies loosely; XREAD's: [(stream, [(id, fields), ...])]
                answer = cast(
                    "StreamReply | None",
                    client.xread(
                        {self.stream: f"{position[0]}-{position[1]}"}, count=1000, block=block_ms
                    ),
                )
            except RedisError as error:
                if self._closed.is_set():
                    return
                position, run = self._reconnect(client, position, run, error)
                continue
            for _, entries in answer or ():
                for entry_id, fields in entries:
                    position = stream_id(entry_id)
                    self._deliver(fields)

    def _deliver(self, fields: dict[bytes, bytes]) -> None:
        if fields.get(b"o") == self.origin:  # its own: skipped before decoding its keys
            return
        message = Message.parse(fields)
        if message is None:
            self.counts["malformed"] += 1
            return
        if message.origin == self.origin:
            return
        try:
            if message.action == "clear":
                self._on_clear()
            elif message.action == "tags":
                self._on_marks(message.keys, (), message.at_ms)
            elif message.action == "prefixes":
                self._on_marks((), message.keys, message.at_ms)
            else:
                self._on_keys(message.keys)
        except Exception:  # a key L1 refuses: never stop reading for it
            log.exception(
                "backplane: applying %s of %d key(s) failed", message.action, len(message.keys)
            )
        # Counted once applied: whoever sees the count sees L1 without those keys.
        self.counts["received"] += 1
        self._tell(None if message.action == "clear" else message.keys)

    def _changed_outside(self, keys: tuple[str, ...]) -> None:
        """A keyspace event: something wrote or deleted ``keys`` in Redis."""
        self._on_keys(keys)
        self._tell(keys)

    def _tell(self, keys: tuple[str, ...] | None) -> None:
        """Call the listeners (see ``listen``); one that raises is logged, never fatal."""
        for listener in self._listeners:
            try:
                listener(keys)
            except Exception:
                log.exception("backplane: a listener failed")

    def _reconnect(
        self, client: Client, position: tuple[int, int], run: str, error: Exception
    ) -> tuple[tuple[int, int], str]:
        """Wait until the server answers again, then decide: read on from ``position`` (the
        gap is replayed by the next read), or drop L1 and start from the stream's end."""
        self.cut_off_since = time.monotonic()
        log.warning("backplane: cut off from %s (%s); L1 is served as it is", self.stream, error)
        dropped = False
        attempt = 0
        while not self._closed.is_set():
            if not dropped and self.max_cut_off is not None:
                if time.monotonic() - self.cut_off_since >= self.max_cut_off:
                    self._drop_l1("cut off for more than max_cut_off")
                    dropped = True
            self._closed.wait(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
            attempt += 1
            try:
                state = self._state(client)
            except RedisError:
                continue
            cut_for = time.monotonic() - self.cut_off_since
            self.cut_off_since = None
            if can_replay(position, run, state) and not dropped:
                self.counts["replayed_gaps"] += 1
                log.warning("backplane: back after %.1f s; replaying what was missed", cut_for)
                return position, run
            if not dropped:
                self._drop_l1("the gap cannot be replayed (trimmed, restarted or cleared)")
            return (state.last_generated if state.exists else (0, 0)), state.server_run
        return position, run

    def _drop_l1(self, why: str) -> None:
        self.counts["dropped_l1"] += 1
        log.warning("backplane: dropping L1: %s", why)
        try:
            self._on_clear()
        except Exception:
            log.exception("backplane: dropping L1 failed")
        self._tell(None)  # what was missed is unknown: whoever waits looks again

    def _publish(self) -> None:
        client = self._connect()
        while True:
            item = self._outbox.get()
            pending, waiters, closing = [], [], False
            while True:
                if item is _CLOSE:
                    closing = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    pending.append(item)
                try:
                    item = self._outbox.get_nowait()
                except queue.Empty:
                    break
            if pending:
                try:
                    self._send(client, batched(pending, MAX_KEYS_PER_ENTRY))
                except Exception:  # a message that cannot be encoded: the thread goes on
                    self.counts["lost"] += len(pending)
                    log.exception("backplane: %d message(s) not sent", len(pending))
            for waiter in waiters:
                waiter.set()
            if closing:
                client.close()
                return

    def _send(self, client: Client, messages: list[Message]) -> None:
        for attempt, pause in enumerate((*RETRY_SECONDS, None)):
            try:
                pipeline = client.pipeline(transaction=False)
                for message in messages:
                    pipeline.xadd(
                        self.stream,
                        # redis-py asks for a dict of its own unions of keys and of values
                        # (invariant, so no narrower dict fits): str to bytes is among them
                        message.fields(),  # type: ignore[arg-type]
                        maxlen=self.stream_length,
                        approximate=True,
                    )
                pipeline.execute()
                self.counts["published"] += len(messages)
                return
            except RedisError as error:
                if pause is None or self._closed.is_set():
                    self.counts["lost"] += len(messages)
                    log.error(
                        "backplane: %d message(s) not sent after %d tries (%s): other instances "
                        "may serve the old values until their L1 TTL or their next resync",
                        len(messages), attempt + 1, error,
                    )  # fmt: skip
                    return
                time.sleep(pause)

    def _after_fork(self) -> None:
        """In a forked child (a pre-fork server's worker): a new origin, and threads of its
        own (those of the parent stayed there). It cannot know what it missed between the
        fork and its first read: it drops its L1 (inherited from the parent) and reads on
        from the stream's end."""
        was_running = bool(self._threads)
        self._threads = []
        self._outbox = queue.SimpleQueue()
        self._closed = threading.Event()
        self.origin = new_origin()
        if was_running:
            self._on_clear()
            reader = self._connect()
            self.cut_off_since = time.monotonic()  # until the first read: served as cut off
            self._launch(reader, None, "")  # reads on from the stream's end, once it answers

    def __repr__(self) -> str:
        return f"Backplane(stream={self.stream!r}, origin={self.origin.decode()})"


def backplane_of(option: Backplane | str | bool | None) -> Backplane | None:
    """The ``Backplane`` a cache's ``backplane=`` option asks for (``companions.py``)."""
    return companion_of(option, Backplane, "backplane")


_CREDENTIALS = ("username", "password", "credential_provider", "client_name", "protocol")


def _credentials(connection_kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a new cluster client needs of a given one's connections to log in as it does
    (TLS clusters: give the Backplane a url, ``rediss://``)."""
    return {name: connection_kwargs[name] for name in _CREDENTIALS if name in connection_kwargs}


def _flush_at_exit(backplane: weakref.ref[Backplane]) -> None:
    live = backplane()
    if live is not None:
        live.close_blocking()


def _nothing(keys: tuple[str, ...]) -> None:
    return None


def _nothing_at_all() -> None:
    return None


def _no_marks(tags: tuple[str, ...], prefixes: tuple[str, ...], at_ms: int) -> None:
    return None


__all__ = ["Backplane", "DEFAULT_STREAM_LENGTH", "STREAM_SUFFIX", "backplane_of"]
