"""A Redis Cluster misbehaving under the cache: a slot migrated between nodes while
threads read and write its keys (MOVED and ASK redirections, TRYAGAIN), and a node down.

What the caller sees: single-key operations ride a migration without an error or a wrong
value, and every acknowledged write is where it belongs afterwards (write-through and
write-behind). With a node down, no exception while the loader can answer, each call
bounded, and L2 hits resume within 2 s of the node's rejoining the cluster (after a
restart it answers CLUSTERDOWN for about a second, which redis-py retries on its own,
0.25 s apart: calls to its slots cost that meanwhile)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from multilayercache import (
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
)
from multilayercache.tools.servers import RedisServer

from local_cluster import RedisCluster
from support import RESUME_SECONDS, wait_until

PREFIX = "migrating:"
KEYS = [f"{{slot}}:{n}" for n in range(100)]  # one hash tag: every key in one slot


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    """A cluster of this module's own: its slots move, its nodes die (and come back)."""
    with RedisCluster.start(masters=3) as started:
        yield started


def restart(node: RedisServer) -> None:
    """Bring a killed node back and wait until it serves its slots: a node that restarts
    answers CLUSTERDOWN until it has talked to the others again (about a second), and
    redis-py retries those calls itself, 0.25 s apart."""
    node.restart()  # its nodes.conf is in its folder: it rejoins with its slots
    client = redis.Redis(port=node.port)
    ready = wait_until(lambda: b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO"), 10)
    client.close()
    assert ready is not None, "the restarted node did not rejoin the cluster"


class Migration:
    """Moves the slot of ``KEYS`` from its node to another, a few keys at a time, as
    ``redis-cli --cluster reshard`` does (IMPORTING / MIGRATING, MIGRATE, SETSLOT NODE)."""

    def __init__(self, cluster: RedisCluster) -> None:
        self.nodes = {node.port: redis.Redis(port=node.port) for node in cluster.nodes}
        self.ids = {
            port: client.execute_command("CLUSTER", "MYID").decode()
            for port, client in self.nodes.items()
        }
        probe = redis.cluster.RedisCluster.from_url(cluster.url)
        self.slot = probe.keyslot(PREFIX + KEYS[0])
        self.source = probe.get_node_from_key(PREFIX + KEYS[0]).port
        probe.close()
        self.target = next(port for port in self.nodes if port != self.source)

    def begin(self) -> None:
        source, target = self.nodes[self.source], self.nodes[self.target]
        target.execute_command("CLUSTER", "SETSLOT", self.slot, "IMPORTING", self.ids[self.source])
        source.execute_command("CLUSTER", "SETSLOT", self.slot, "MIGRATING", self.ids[self.target])

    def move_some(self, count: int) -> bool:
        """Move up to ``count`` keys; False once none is left on the source."""
        source = self.nodes[self.source]
        batch = source.execute_command("CLUSTER", "GETKEYSINSLOT", self.slot, count)
        if batch:
            source.execute_command("MIGRATE", "127.0.0.1", self.target, "", 0, 5000, "KEYS", *batch)
        return bool(batch)

    def end(self) -> None:
        """Give the slot to the target: the target first, then the source, then the rest,
        as ``redis-cli`` does (redis/redis#5728, #7116). Told first, the source would send
        every call MOVED to the target, still importing, which sends it MOVED back: until
        the target is told too, redis-py follows the ping-pong to "TTL exhausted"."""
        order = [
            self.target,
            self.source,
            *(p for p in self.nodes if p not in (self.target, self.source)),
        ]
        for port in order:
            self.nodes[port].execute_command(
                "CLUSTER", "SETSLOT", self.slot, "NODE", self.ids[self.target]
            )

    def run(self, pause: float = 0.02) -> None:
        self.begin()
        while self.move_some(5):
            time.sleep(pause)
        self.end()

    def close(self) -> None:
        for client in self.nodes.values():
            client.close()


def test_single_key_operations_ride_a_slot_migration(cluster: RedisCluster, tmp_path: Path):
    through = MultilayerCache(
        [InMemoryLayer(max_size=10), RedisLayer(cluster.url, cluster=True, prefix=PREFIX)]
    )
    dead = tmp_path / "dead.jsonl"
    behind = MultilayerCache(
        [InMemoryLayer(max_size=10), RedisLayer(cluster.url, cluster=True, prefix=PREFIX)],
        [None, LayerPolicy(write=WriteBehind(dead_letter=dead, max_delay=0.005))],
    )
    through.set_many({key: f"{key}#0" for key in KEYS})
    latest: dict[str, str | None] = {}  # what each key holds last, as its caller was told
    failures: list[BaseException] = []
    wrong: list[tuple[str, Any]] = []
    stop = threading.Event()

    def work(seed: int) -> None:
        # Each thread reads and writes keys of its own (a quarter of KEYS, all in the one
        # moving slot), so a write is lost only if the cluster or the layer loses it. Not
        # two caches on one key: a write-behind write may land after another instance's
        # newer one (test_cut_off.py's xfail). Not two threads on one key: a load begun
        # before another thread's set may land in Redis just after it (the look-aside
        # stale set, documented in plans.write_loaded and test_races.py).
        rng = random.Random(seed)
        cache, keys = (through if seed % 2 else behind), KEYS[seed::4]
        while not stop.is_set():
            key, dice = rng.choice(keys), rng.random()
            try:
                if dice < 0.5:
                    value = cache.get_or_load(key, lambda key: f"{key}#loaded")
                    if not value.startswith(f"{key}#"):
                        wrong.append((key, value))
                    continue
                if dice < 0.9:
                    value = f"{key}#{rng.random()}"
                    cache.set(key, value)
                else:
                    cache.delete(key)
                    value = None
                latest[key] = value
            except Exception as error:
                failures.append(error)

    workers = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in workers:
        thread.start()
    migration = Migration(cluster)
    try:
        migration.run()
        time.sleep(0.2)  # and on, with the slot at its new node (MOVED, then the new map)
    finally:
        stop.set()
        for thread in workers:
            thread.join()
    assert behind.flush(timeout=10)
    assert failures == [] and wrong == []
    assert through.stats().read_errors["redis"] == 0 == behind.stats().read_errors["redis"]
    assert behind.stats().write_queues["redis"].dead_lettered == 0 and not dead.exists()
    target = migration.nodes[migration.target]
    assert target.execute_command("CLUSTER", "COUNTKEYSINSLOT", migration.slot) > 0
    reader = RedisLayer(cluster.url, cluster=True, prefix=PREFIX)
    held = {key: reader.get(key) for key in latest}
    reader.close()
    # A deleted key read again was loaded and cached: that value, or nothing, is right.
    lost = {
        key: (value, held[key])
        for key, value in latest.items()
        if held[key] != value and not (value is None and held[key] == f"{key}#loaded")
    }
    assert lost == {}, f"(acknowledged, in Redis) after the migration: {lost}"
    migration.close()
    through.close()
    behind.close()


def test_get_many_finds_the_keys_of_a_slot_being_migrated(cluster: RedisCluster) -> None:
    """A batch whose slot is half migrated (its MGET refused with TRYAGAIN) reads that
    slot key by key, following each key's ASK; the keys of other slots keep their MGET,
    and the batches that follow skip the refused MGET."""
    cache = MultilayerCache(
        [InMemoryLayer(max_size=10), RedisLayer(cluster.url, cluster=True, prefix=PREFIX)]
    )
    elsewhere = [f"elsewhere{n}" for n in range(30)]  # keys of other slots and nodes
    cache.set_many({key: key for key in KEYS + elsewhere})
    migration = Migration(cluster)
    migration.begin()
    migration.move_some(50)  # half of the keys at the target, half at the source
    try:
        for _ in range(3):
            start = time.monotonic()
            assert cache.get_many(KEYS + elsewhere) == {key: key for key in KEYS + elsewhere}
            seconds = time.monotonic() - start
        assert seconds < 0.1, f"a batch after the first still waited {seconds:.2f} s"
        assert cache.stats().read_errors["redis"] == 0
    finally:
        while migration.move_some(50):
            pass
        migration.end()
        migration.close()
        cache.close()


async def test_async_get_many_finds_the_keys_of_a_slot_being_migrated(
    cluster: RedisCluster,
) -> None:
    layer = AsyncRedisLayer(cluster.url, cluster=True, prefix=PREFIX)
    await layer.set_many({key: key for key in KEYS})
    migration = Migration(cluster)
    migration.begin()
    migration.move_some(50)
    try:
        for _ in range(2):
            assert await layer.get_many(KEYS) == {key: key for key in KEYS}
        assert layer.stats().errors == 0
    finally:
        while migration.move_some(50):
            pass
        migration.end()
        migration.close()
        await layer.close()


def readers_of(cache: MultilayerCache, keys: list[str], stop: threading.Event) -> dict:
    """Reads ``keys`` through ``cache`` in two threads until ``stop``; returns what went
    wrong and the slowest call, filled in as they run."""
    report: dict[str, Any] = {"failures": [], "wrong": [], "slowest": 0.0, "threads": []}

    def read(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            key = rng.choice(keys)
            start = time.monotonic()
            try:
                if cache.get_or_load(key, str.upper) != key.upper():
                    report["wrong"].append(key)
            except Exception as error:
                report["failures"].append(error)
            report["slowest"] = max(report["slowest"], time.monotonic() - start)

    report["threads"] = [threading.Thread(target=read, args=(seed,)) for seed in range(2)]
    for thread in report["threads"]:
        thread.start()
    return report


def split_by_node(cluster: RedisCluster, count: int) -> tuple[list[str], list[str], Any]:
    """``count`` keys, split into those of the first node and the others'."""
    probe = redis.cluster.RedisCluster.from_url(cluster.url)
    keys = [f"k{n}" for n in range(count)]
    doomed = cluster.nodes[0].port
    on_doomed = [key for key in keys if probe.get_node_from_key(PREFIX + key).port == doomed]
    probe.close()
    return on_doomed, [key for key in keys if key not in on_doomed], cluster.nodes[0]


def test_a_node_down_costs_no_exception_and_l2_hits_resume_after_its_restart(
    cluster: RedisCluster,
) -> None:
    on_doomed, elsewhere, node = split_by_node(cluster, 300)
    l2 = RedisLayer(cluster.url, cluster=True, prefix=PREFIX, name="l2")
    cache = MultilayerCache([InMemoryLayer(max_size=10, name="l1"), l2])
    cache.set_many({key: key.upper() for key in on_doomed + elsewhere})
    stop = threading.Event()
    report = readers_of(cache, on_doomed + elsewhere, stop)
    try:
        assert wait_until(lambda: l2.stats().hits > 100, 10) is not None
        node.kill()
        assert wait_until(lambda: cache.stats().read_errors["l2"] > 0, 5) is not None
        time.sleep(1.0)
        restart(node)
        hits = l2.stats().hits
        resumed = wait_until(lambda: l2.stats().hits > hits + 50, RESUME_SECONDS)
        assert resumed is not None, f"no L2 hits within {RESUME_SECONDS} s of the rejoin"
    finally:
        stop.set()
        for thread in report["threads"]:
            thread.join()
        cache.close()
    assert report["failures"] == [] and report["wrong"] == []
    assert report["slowest"] < 1.5, report["slowest"]


def test_a_node_down_leaves_the_other_nodes_serving(cluster: RedisCluster) -> None:
    """One breaker per node: the dead node's opens, the live nodes' keys still hit L2."""
    on_doomed, elsewhere, node = split_by_node(cluster, 300)
    l2 = RedisLayer(cluster.url, cluster=True, prefix=PREFIX, name="l2")
    cache = MultilayerCache([InMemoryLayer(max_size=10, name="l1"), l2])
    cache.set_many({key: key.upper() for key in on_doomed + elsewhere})
    node.kill()
    rng = random.Random(1)
    served_by_l2 = reads = 0
    deadline = time.monotonic() + 1.0
    try:
        while time.monotonic() < deadline:
            cache.get_or_load(rng.choice(on_doomed), str.upper)  # the dead node's share
            before = l2.stats().hits
            cache.get_or_load(rng.choice(elsewhere), str.upper)
            served_by_l2 += l2.stats().hits - before
            reads += 1
    finally:
        cache.close()
        restart(node)
    assert served_by_l2 / reads > 0.5, f"{served_by_l2} of {reads} live-node reads hit L2"
    node_breakers = cache.stats().node_breakers["l2"]
    dead = f"127.0.0.1:{node.port}"
    assert node_breakers[dead].opened >= 1  # the dead node's keys went to the loader at once
    assert all(stats.opened == 0 for name, stats in node_breakers.items() if name != dead)


def test_a_restart_of_the_backplane_s_node_drops_l1_and_delivery_resumes(
    cluster: RedisCluster,
) -> None:
    """The backplane's stream lives on one node: when that node restarts (a new run_id,
    as after a failover) the others cannot vouch for what they missed and drop their L1;
    then messages flow again."""
    from multilayercache.layers.redis.backplane import Backplane

    prefix = f"bp{random.random()}:"

    def instance() -> MultilayerCache:
        l2 = RedisLayer(cluster.url, cluster=True, prefix=prefix, name="l2")
        backplane = Backplane(cluster.url)
        return MultilayerCache([InMemoryLayer(max_size=100, name="l1"), l2], backplane=backplane)

    a, b = instance(), instance()
    probe = redis.cluster.RedisCluster.from_url(cluster.url)
    owner = probe.get_node_from_key(b.backplane.stream).port
    probe.close()
    node = next(node for node in cluster.nodes if node.port == owner)
    try:
        a.set("k", "v")
        assert wait_until(lambda: b.backplane.stats()["received"] == 1, 5) is not None
        assert b.get("k") == b.get("k") == "v" and "k" in b.layers[0]
        node.kill()
        time.sleep(0.5)
        restart(node)
        assert wait_until(lambda: b.backplane.stats()["dropped_l1"] == 1, 10) is not None
        assert "k" not in b.layers[0]
        b.get("k")
        b.get("k")
        a.set("k", "after")
        assert wait_until(lambda: b.get("k") == "after", 5) is not None
    finally:
        a.close()
        b.close()
