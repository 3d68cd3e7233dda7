"""``FleetInfo``: every instance publishes its hot keys and a small stats summary to the
shared layer, so that any instance (``cache.global_top_keys(n)``) or an operator
(``python -m multilayercache top``, ``inspect``) sees the whole fleet.

    cache = MultilayerCache([l1, l2], fleet_info=True)           # every 5 s, on l2's server
    cache = MultilayerCache([l1, l2], fleet_info=FleetInfo(period_seconds=2))
    cache.global_top_keys(10)    # [("user:42", 5130), ...]: accesses per minute, fleet-wide

What is published (``analytics/fleetreport.py``): one Redis hash per instance, its hottest
``MAX_PUBLISHED_KEYS`` keys (their text in the shared layer, never a value) with their
recent rates (``analytics/globaltop.py``: why rates), and per layer its hits, misses, hit
ratio, size, breaker state and write-behind queue depth: a few KB. A thread of its own
publishes once soon after the cache starts (``FIRST_PUBLISH_SECONDS``: an instance shows in
the fleet's view within a second, not a period), then every ``period_seconds``, off the
request path; reading the L1's per-key counts takes one copy of its slots
(``analytics/accesses.py``, the reader insights use too: about 0.2 ms per 10,000 entries).
The hash lives ``ttl_seconds`` (three periods by default) after each publish, so a dead
instance (SIGKILL, a lost host) drops out within its TTL; a closed cache, or a process that
exits or is stopped by SIGTERM, removes its own at once. Liveness is the server's TTL, not
any host's clock.

Keys (under the layer's prefix; names starting with ``__mlc:``, as the cache's other
bookkeeping, which ``track_external_writes`` ignores):

* ``PREFIX__mlc:fleet{fleet:PREFIX}:instances``: a sorted set, the index of instances
  (scored by when each expects to be gone, pruned by the publishers);
* ``PREFIX__mlc:fleet{fleet:PREFIX}:i:ID``: each instance's hash.

On a Redis Cluster all of them carry one hash tag, ``{fleet:PREFIX}``, so they live in one
slot: the reader's index read and its ``HGETALL`` of every instance go to one node in one
pipeline (one round trip however many instances), and a publisher's writes likewise.
Without the tag they would scatter over the nodes, a round trip to each. The tag pins only
these few small keys, per prefix: the cache's own keys still spread over every node.

Reading back is untrusted: fields that do not parse are skipped and counted
(``stats()["skipped"]``), never raised. An instance that cannot reach the server keeps
trying every period (logged once per outage); ``global_top_keys`` then raises
``LayerUnavailableError``.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import redis
import redis.cluster
from redis.exceptions import RedisError

from ... import shutdown
from ..._forking import register_after_fork
from ...analytics.accesses import RecentAccesses
from ...analytics.fleetreport import InstanceReport, LayerSummary, decode, encode, summarise
from ...analytics.globaltop import DEFAULT_WINDOW_SECONDS, AccessRates, checked_n, merge_top
from ...core.errors import LayerUnavailableError
from ...core.stats import CacheStats
from .companions import companion_of

log = logging.getLogger("multilayercache.fleetinfo")

FLEET_INFIX = "__mlc:fleet"
DEFAULT_PERIOD_SECONDS = 5.0
FIRST_PUBLISH_SECONDS = 1.0
"""An instance's first publish comes at most this long after it starts (or one period, if
shorter), at a random moment in the second half of that span: processes started together
(a deploy, a pre-fork server) spread their first writes instead of landing at once, and
each adds one write to L2, the size of its periodic ones."""
TTL_PERIODS = 3
"""A hash lives this many periods after its last publish: one late or failed publish does
not make a live instance disappear."""
MAX_INSTANCES = 1_000
"""Instances read at most (the index is bounded by what the publishers prune)."""
INDEX_GRACE_SECONDS = 60.0
"""Index entries of instances gone this long are pruned (hosts' clocks may disagree by
less than this; liveness itself is each hash's TTL on the server)."""

Client = redis.Redis | redis.cluster.RedisCluster
CANDIDATES = 400
"""The most accessed keys of each reading whose rates are followed: more than are published
(``MAX_PUBLISHED_KEYS``), so that a key rising into the top already has a history."""

Source = Callable[[], CacheStats | None]
"""What the cache hands the publisher: its ``stats()``; ``None`` once the cache is gone
(collected without ``close()``): the thread then ends."""


def fleet_keys(prefix: str) -> tuple[str, str]:
    """The index key of ``prefix``'s fleet, and the start of each instance's key."""
    base = f"{prefix}{FLEET_INFIX}{{fleet:{prefix}}}:"
    return base + "instances", base + "i:"


class FleetInfo:
    """Publishes this instance's hot keys and stats for the fleet's view, and reads the
    others' (see the module docstring). ``url`` or ``client``: the server (by default the
    shared layer's). ``period_seconds``: how often it publishes; ``ttl_seconds``: how long
    a published hash outlives its instance (default three periods); ``window_seconds``:
    how far back the rates look (the time constant of their moving average);
    ``publish=False``: only read the others' (this instance does not appear)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Client | None = None,
        period_seconds: float = DEFAULT_PERIOD_SECONDS,
        ttl_seconds: float | None = None,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        publish: bool = True,
    ) -> None:
        if url is not None and client is not None:
            raise ValueError("give a url or a client, not both")
        if client is not None and not isinstance(client, (redis.Redis, redis.cluster.RedisCluster)):
            raise TypeError(
                f"client must be a redis.Redis or redis.cluster.RedisCluster, got "
                f"{type(client).__name__}"
            )
        if not _positive(period_seconds):
            raise ValueError(f"period_seconds must be a number > 0, got {period_seconds!r}")
        if ttl_seconds is None:
            ttl_seconds = TTL_PERIODS * period_seconds
        if not _positive(ttl_seconds) or ttl_seconds < period_seconds:
            raise ValueError(
                f"ttl_seconds must be a number >= period_seconds ({period_seconds}), "
                f"got {ttl_seconds!r}"
            )
        self.url = url
        self.period_seconds = float(period_seconds)
        self.ttl_seconds = float(ttl_seconds)
        self.publishing = bool(publish)
        self._client: Client | None = client
        self._rates = AccessRates(window_seconds)
        self._lock = threading.Lock()
        self._source: Source | None = None
        self._accesses: RecentAccesses | None = None
        self._text_of: Callable[[Any], str | None] = _no_text
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._published_fields: set[bytes] = set()
        self._failing = False
        self.prefix = ""
        self.instance = _new_instance_id()
        self.counts = dict.fromkeys(("published", "publish_errors", "skipped", "dead"), 0)
        register_after_fork(self)

    # ---------------------------------------------------------------- wiring
    def start(
        self,
        prefix: str,
        source: Source,
        default_url: str | None = None,
        default_client: Any = None,
        cluster: bool = False,
        counted: Any = None,
        text_of: Callable[[Any], str | None] | None = None,
    ) -> None:
        """Begin publishing what ``source()`` reports under ``prefix`` (unless
        ``publish=False``), and the hottest keys of ``counted`` (an in-process layer that
        sees every read; one without per-key counts, or ``None``: no keys), each under
        ``text_of(key)``, the text the shared layer stores it as (``None``: it stores no
        such key). ``default_url`` (else ``default_client``, when it is a sync redis-py
        client) is the server when none was given; ``cluster``: it is a cluster."""
        if self._source is not None:
            raise RuntimeError("this FleetInfo is in use by a cache already: give each its own")
        if self.url is None and self._client is None:
            if isinstance(default_client, (redis.Redis, redis.cluster.RedisCluster)):
                self._client = default_client
            elif default_url is not None:
                self.url = default_url
            else:
                raise ValueError(
                    "fleet_info=True needs a shared layer built from a url or a sync redis-py "
                    "client: give FleetInfo(url) otherwise"
                )
        if self._client is None:
            assert self.url is not None
            self._client = connect(self.url, cluster)
        self.prefix = prefix
        self._source = source
        if callable(getattr(counted, "access_counts", None)) and text_of is not None:
            self._accesses = RecentAccesses(counted)
            self._text_of = text_of
        if self.publishing:
            # A process that exits or is stopped by SIGTERM leaves the fleet's view at once
            # (SIGKILL: within its TTL).
            shutdown.watch(self)
            atexit.register(_leave_at_exit, weakref.ref(self))
            self._launch()

    def _launch(self) -> None:
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mlc-fleet-info", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Stop publishing and remove this instance's hash (the others stop seeing it)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._closed.set()
        thread.join(timeout)
        index, base = fleet_keys(self.prefix)
        try:
            pipeline = self._connected().pipeline(transaction=False)
            pipeline.delete(base + self.instance)
            pipeline.zrem(index, self.instance)
            pipeline.execute()
        except RedisError:  # it expires within its TTL anyway
            pass

    def close_blocking(self, timeout: float | None = None) -> bool:
        """At shutdown (``multilayercache.shutdown``): ``close`` within ``timeout``."""
        self.close(1.0 if timeout is None else timeout)
        return True

    def stats(self) -> dict[str, int]:
        """Publishes made and failed, fields read back and skipped as untrusted, and dead
        instances dropped from the index."""
        return dict(self.counts)

    # ---------------------------------------------------------------- publishing
    def _run(self) -> None:
        try:
            self._observe()  # the baseline: rates start from here
        except Exception:
            log.exception("fleet info: reading the cache's counts failed")
        wait = first_publish_delay(self.period_seconds)
        while not self._closed.wait(wait):
            wait = self.period_seconds
            try:
                if not self.publish_now():
                    return
            except Exception:  # the thread must outlive any failure, or the fleet loses us
                log.exception("fleet info: publishing failed")

    def _observe(self) -> tuple[LayerSummary, ...] | None:
        assert self._source is not None
        stats = self._source()
        if stats is None:
            return None
        accesses: dict[str, int] = {}
        if self._accesses is not None:
            for key, count in self._accesses.read(CANDIDATES):
                text = self._text_of(key)
                if text is not None:  # keys of one text (1 and 1.0) add up
                    accesses[text] = accesses.get(text, 0) + count
        with self._lock:
            self._rates.observe(accesses, time.monotonic())
        return summarise(stats)

    def publish_now(self) -> bool:
        """Read the counts and publish at once (the thread does it every period); False
        when the cache is gone."""
        layers = self._observe()
        if layers is None:
            return False
        report = InstanceReport(
            self.instance,
            host=socket.gethostname(),
            pid=os.getpid(),
            published_at=time.time(),
            period_seconds=self.period_seconds,
            layers=layers,
            top=self.local_rates(),
        )
        fields = encode(report)
        index, base = fleet_keys(self.prefix)
        key = base + self.instance
        ttl_ms = int(self.ttl_seconds * 1000)
        now_ms = int(time.time() * 1000)
        stale = self._published_fields - fields.keys()
        try:
            # No DEL first: a reader never sees the hash empty, at worst old and new keys
            # together for one round trip.
            pipeline = self._connected().pipeline(transaction=False)
            pipeline.hset(key, mapping=fields)  # type: ignore[arg-type]
            if stale:
                pipeline.hdel(key, *stale)
            pipeline.pexpire(key, ttl_ms)
            pipeline.zadd(index, {self.instance: now_ms + ttl_ms})
            pipeline.zremrangebyscore(index, "-inf", now_ms - int(INDEX_GRACE_SECONDS * 1000))
            pipeline.pexpire(index, ttl_ms + int(INDEX_GRACE_SECONDS * 1000))
            pipeline.execute()
        except RedisError as error:
            self.counts["publish_errors"] += 1
            if not self._failing:
                log.warning("fleet info: cannot publish to %s (%s); retrying", key, error)
            self._failing = True
            return True
        self._failing = False
        self._published_fields = set(fields)
        self.counts["published"] += 1
        return True

    def local_rates(self) -> dict[str, float]:
        """This instance's hot keys' recent rates (accesses per second), as last observed."""
        with self._lock:
            return dict(self._rates.top())

    # ---------------------------------------------------------------- reading
    def read(self) -> list[InstanceReport]:
        """What every live instance published (this one's too), oldest instance first;
        ``LayerUnavailableError`` if the server cannot be reached."""
        reports, skipped, dead = read_fleet(self._connected(), self.prefix)
        self.counts["skipped"] += skipped
        self.counts["dead"] += dead
        return reports

    def top(self, n: int = 10) -> list[tuple[str, int]]:
        """The fleet's ``n`` hottest keys: every other live instance's published rates,
        and this one's own (if it publishes), added up, as ``(key, accesses per minute)``."""
        checked_n(n)
        views = [report.top for report in self.read() if report.instance != self.instance]
        if self.publishing:
            views.append(self.local_rates())
        return merge_top(views, n)

    def _connected(self) -> Client:
        if self._client is None:
            raise RuntimeError("FleetInfo is not started: pass it to a cache (fleet_info=...)")
        return self._client

    def _after_fork(self) -> None:
        """In a forked child: an instance of its own (the parent goes on as itself), with
        fresh rates, and a thread of its own if the parent published."""
        self.instance = _new_instance_id()
        self._lock = threading.Lock()
        self._rates = AccessRates(self._rates.window_seconds)
        if self._accesses is not None:
            self._accesses.restart()  # the parent's reading is no baseline of the child's
        self._published_fields = set()
        if self._thread is not None:
            self._launch()

    def __repr__(self) -> str:
        return f"FleetInfo(prefix={self.prefix!r}, instance={self.instance!r})"


def read_fleet(client: Client, prefix: str) -> tuple[list[InstanceReport], int, int]:
    """What the live instances of ``prefix`` published, the fields skipped as untrusted,
    and the dead instances dropped from the index; ``LayerUnavailableError`` if the server
    cannot be reached."""
    index, base = fleet_keys(prefix)
    try:
        members: list[Any] = list(client.zrange(index, 0, MAX_INSTANCES - 1))
        instances: list[str] = []
        skipped = 0
        for member in members:
            try:
                instances.append(member.decode("ascii"))
            except (UnicodeDecodeError, AttributeError):  # not an id an instance wrote
                skipped += 1
        pipeline = client.pipeline(transaction=False)
        for instance in instances:
            pipeline.hgetall(base + instance)
        hashes = pipeline.execute() if instances else []
        reports, dead = [], []
        for instance, fields in zip(instances, hashes, strict=True):
            if not fields:  # expired: its instance is gone
                dead.append(instance)
                continue
            report, bad = decode(instance, fields)
            reports.append(report)
            skipped += bad
        if dead:
            client.zrem(index, *dead)
    except RedisError as error:
        raise LayerUnavailableError(f"fleet info: cannot read {index}: {error}") from error
    return reports, skipped, len(dead)


def connect(url: str, cluster: bool | None = None) -> Client:
    """A sync client of ``url`` for the fleet info (a cluster's when ``cluster``; ``None``:
    ask the server)."""
    options: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}
    if cluster is None:
        probe = redis.Redis.from_url(url, **options)
        try:
            cluster = probe.info("cluster").get("cluster_enabled") == 1
        except RedisError:
            cluster = False
        finally:
            probe.close()
    if cluster:
        return redis.cluster.RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)


def fleet_info_of(option: FleetInfo | str | bool | None) -> FleetInfo | None:
    """The ``FleetInfo`` a cache's ``fleet_info=`` option asks for (``companions.py``)."""
    return companion_of(option, FleetInfo, "fleet_info")


def first_publish_delay(period_seconds: float) -> float:
    """Seconds from an instance's start to its first publish (``FIRST_PUBLISH_SECONDS``)."""
    return min(period_seconds, FIRST_PUBLISH_SECONDS) * random.uniform(0.5, 1.0)


def _no_text(key: Any) -> str | None:
    return None


def _leave_at_exit(fleet_info: weakref.ref[FleetInfo]) -> None:
    live = fleet_info()
    if live is not None:
        live.close(1.0)


def _new_instance_id() -> str:
    return f"{os.getpid()}-{os.urandom(4).hex()}"


def _positive(value: object) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
    )


__all__ = [
    "DEFAULT_PERIOD_SECONDS",
    "FIRST_PUBLISH_SECONDS",
    "FleetInfo",
    "connect",
    "fleet_info_of",
    "fleet_keys",
    "read_fleet",
]
