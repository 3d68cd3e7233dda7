"""``FleetInfo`` and ``global_top_keys`` against real servers: what each instance publishes,
how it is read back (also when poisoned), how a dead instance drops out, and the cluster."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis
import redis.cluster

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.core.errors import LayerUnavailableError
from multilayercache.layers.redis.fleetinfo import (
    FIRST_PUBLISH_SECONDS,
    FleetInfo,
    first_publish_delay,
    fleet_keys,
)

from faults.forking import in_child

PERIOD = 0.2
SRC = str(Path(__file__).resolve().parents[3] / "src")


def fleet_cache(url: str, prefix: str, **options) -> MultilayerCache:
    info = FleetInfo(period_seconds=PERIOD, **options)
    return MultilayerCache(
        [InMemoryLayer(max_size=1_000), RedisLayer(url, prefix=prefix)], fleet_info=info
    )


def read_keys(cache: MultilayerCache, reads: dict[str, int]) -> None:
    for key, times in reads.items():
        for _ in range(times):
            cache.get_or_load(key, lambda key: key.upper())


def wait_for(condition, timeout: float = 5.0, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(step)
    raise AssertionError("timed out")


def test_every_instance_publishes_and_the_merge_adds_them_up(redis_url, prefix) -> None:
    one, two = fleet_cache(redis_url, prefix), fleet_cache(redis_url, prefix)
    try:
        for _ in range(10):  # reads spread over a few periods: rates, not one burst
            read_keys(one, {"only-one": 60, "both": 40, "cold": 1})
            read_keys(two, {"both": 40, "only-two": 20})
            time.sleep(PERIOD / 2)
        wait_for(lambda: one.fleet_info.counts["published"] >= 3)
        wait_for(lambda: two.fleet_info.counts["published"] >= 3)
        top = one.global_top_keys(3)
        assert [key for key, _ in top] == ["both", "only-one", "only-two"]
        assert all(per_minute > 0 for _, per_minute in top)
        assert [key for key, _ in two.global_top_keys(3)] == [key for key, _ in top]
        assert top[1][1] / top[0][1] == pytest.approx(60 / 80, rel=0.2)  # rates, as counted
        reports = {report.instance: report for report in one.fleet_info.read()}
        assert set(reports) == {one.fleet_info.instance, two.fleet_info.instance}
        mine = reports[one.fleet_info.instance]
        assert [layer.name for layer in mine.layers] == ["memory", "redis"]
        memory, shared = mine.layers
        assert memory.hits > 0 and memory.size == len(one.layers[0])
        assert shared.breaker == "closed" and shared.queue_depth is None
        assert mine.pid == os.getpid()
    finally:
        one.close()
        two.close()


def test_a_closed_instance_disappears_at_once(redis_url, prefix, raw_redis) -> None:
    one, two = fleet_cache(redis_url, prefix), fleet_cache(redis_url, prefix)
    read_keys(one, {"a": 5})
    wait_for(lambda: len(two.fleet_info.read()) == 2)
    one.close()
    assert [report.instance for report in two.fleet_info.read()] == [two.fleet_info.instance]
    two.close()
    index, base = fleet_keys(prefix)
    assert not raw_redis.exists(index) or raw_redis.zcard(index) == 0
    assert not raw_redis.keys(base.replace("{", "\\{").replace("}", "\\}") + "*")


def test_a_cache_without_fleet_info_reads_the_others(redis_url, prefix) -> None:
    publisher = fleet_cache(redis_url, prefix)
    reader = MultilayerCache([InMemoryLayer(max_size=10), RedisLayer(redis_url, prefix=prefix)])
    try:
        for _ in range(5):
            read_keys(publisher, {"hot": 50, "warm": 10})
            time.sleep(PERIOD / 2)
        wait_for(lambda: publisher.fleet_info.counts["published"] >= 2)
        read_keys(reader, {"reader-only": 100})  # not published: the reader publishes none
        assert [key for key, _ in reader.global_top_keys(5)] == ["hot", "warm"]
        assert [report.instance for report in reader.fleet_info.read()] == [
            publisher.fleet_info.instance
        ]
    finally:
        publisher.close()
        reader.close()


async def test_the_asyncio_manager(redis_url, prefix) -> None:
    info = FleetInfo(period_seconds=PERIOD)
    cache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=100), AsyncRedisLayer(redis_url, prefix=prefix)], fleet_info=info
    )
    other = fleet_cache(redis_url, prefix)

    async def load(key: str) -> str:
        return key

    try:
        for _ in range(6):
            for key, times in (("a", 30), ("b", 10)):
                for _ in range(times):
                    await cache.get_or_load(key, load)
            read_keys(other, {"b": 30, "c": 5})
            await asyncio.sleep(PERIOD / 2)
        await asyncio.to_thread(wait_for, lambda: info.counts["published"] >= 2)
        assert [key for key, _ in await cache.global_top_keys(3)] == ["b", "a", "c"]
    finally:
        await cache.close()
        other.close()
    assert [report.instance for report in other.fleet_info.read()] == []


def test_a_killed_instance_drops_out_within_its_ttl(redis_url, prefix) -> None:
    ttl = 1.0
    script = textwrap.dedent(
        f"""
        import sys, time
        from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer
        from multilayercache.layers.redis.fleetinfo import FleetInfo
        cache = MultilayerCache(
            [InMemoryLayer(max_size=100), RedisLayer({redis_url!r}, prefix={prefix!r})],
            fleet_info=FleetInfo(period_seconds={PERIOD}, ttl_seconds={ttl}),
        )
        for _ in range(50):
            cache.get_or_load("from-the-dead", str)
        print(cache.fleet_info.instance, flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    reader = MultilayerCache([RedisLayer(redis_url, prefix=prefix)])
    try:
        instance = child.stdout.readline().strip()
        reader.global_top_keys(1)  # makes the reader's FleetInfo (it publishes nothing)
        wait_for(lambda: [r.instance for r in reader.fleet_info.read()] == [instance])
        assert [key for key, _ in reader.global_top_keys(1)] == ["from-the-dead"]
        child.send_signal(signal.SIGKILL)
        child.wait(5)
        killed = time.monotonic()
        wait_for(lambda: not reader.fleet_info.read(), timeout=ttl + 2)
        assert time.monotonic() - killed <= ttl + 0.1
        assert reader.global_top_keys(1) == []
        assert reader.fleet_info.stats()["dead"] == 1
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
        reader.close()


def test_poisoned_bytes_are_skipped_and_counted(redis_url, prefix, raw_redis) -> None:
    cache = fleet_cache(redis_url, prefix)
    try:
        for _ in range(4):
            read_keys(cache, {"real": 40})
            time.sleep(PERIOD / 2)
        wait_for(lambda: cache.fleet_info.counts["published"] >= 2)
        index, base = fleet_keys(prefix)
        mine = base + cache.fleet_info.instance
        # Another program (or an attacker) wrote junk beside what the instances publish:
        # into a live instance's hash, as a fake instance, and into the index.
        raw_redis.hset(mine, mapping={b"k:\xff\xfe": b"1", b"k:nan": b"nan", b"i2": b"x"})
        raw_redis.hset(base + "forged", mapping={b"i": b"\x00junk", b"k:forged": b"5.0"})
        raw_redis.expire(base + "forged", 30)
        raw_redis.zadd(index, {b"forged": 1e15, b"\xff\xfe": 1e15, b"ghost": 1e15})
        top = cache.global_top_keys(5)
        assert [key for key, _ in top] == ["real", "forged"]
        skipped = cache.fleet_info.stats()["skipped"]
        assert (
            skipped >= 4
        )  # 3 fields of the live hash (until republished), the forged info, the bad id
        assert cache.fleet_info.stats()["dead"] == 1  # "ghost": no hash, dropped from the index
        reports = cache.fleet_info.read()
        assert {report.instance for report in reports} == {cache.fleet_info.instance, "forged"}
    finally:
        cache.close()


def test_what_is_published_is_bounded(redis_url, prefix, raw_redis) -> None:
    cache = fleet_cache(redis_url, prefix)
    try:
        long_key = "long:" + "x" * 1_000
        for _ in range(3):
            read_keys(cache, {f"key:{i}": 3 for i in range(500)})
            read_keys(cache, {long_key: 50})
            time.sleep(PERIOD)
        wait_for(lambda: cache.fleet_info.counts["published"] >= 3)
        _, base = fleet_keys(prefix)
        mine = base + cache.fleet_info.instance
        assert raw_redis.hlen(mine) <= 101  # 100 keys and the summary
        assert not raw_redis.hexists(mine, "k:" + long_key)
        assert raw_redis.memory_usage(mine) < 16_000
        assert 0 < raw_redis.pttl(mine) <= 3 * PERIOD * 1000
    finally:
        cache.close()


def test_keys_it_cannot_publish_and_values_never_are(redis_url, prefix, raw_redis) -> None:
    cache = fleet_cache(redis_url, prefix)
    try:
        for _ in range(3):
            for _ in range(30):
                cache.layers[0].get(12345)  # an int key: the shared layer stores no such key
                cache.get_or_load("user:1", lambda key: "SECRET-VALUE")
            time.sleep(PERIOD)
        wait_for(lambda: cache.fleet_info.counts["published"] >= 2)
        _, base = fleet_keys(prefix)
        fields = raw_redis.hgetall(base + cache.fleet_info.instance)
        assert b"k:user:1" in fields
        assert not any(b"SECRET" in name or b"SECRET" in value for name, value in fields.items())
        assert not any(b"12345" in name for name in fields)
    finally:
        cache.close()


def test_the_server_down_raises_a_clear_error_and_publishing_goes_on(doomed_server, prefix):
    cache = fleet_cache(doomed_server.url, prefix)
    try:
        wait_for(lambda: cache.fleet_info.counts["published"] >= 1)
        doomed_server.stop()
        with pytest.raises(LayerUnavailableError, match="fleet info"):
            cache.global_top_keys(3)
        wait_for(lambda: cache.fleet_info.counts["publish_errors"] >= 2)
        assert cache.fleet_info._thread.is_alive()
    finally:
        cache.close(timeout=0.5)


def test_a_cache_dropped_without_close_stops_publishing(redis_url, prefix) -> None:
    cache = fleet_cache(redis_url, prefix)
    info = cache.fleet_info
    wait_for(lambda: info.counts["published"] >= 1)
    thread = info._thread
    del cache
    gc.collect()
    thread.join(PERIOD * 5)
    assert not thread.is_alive()


def test_bad_options_are_refused(redis_url, prefix) -> None:
    with pytest.raises(ValueError, match="period_seconds"):
        FleetInfo(period_seconds=0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        FleetInfo(period_seconds=5, ttl_seconds=1)
    with pytest.raises(TypeError, match="fleet_info"):
        MultilayerCache([InMemoryLayer(max_size=10)], fleet_info=3)
    with pytest.raises(ValueError, match="shared layer"):
        MultilayerCache([InMemoryLayer(max_size=10)], fleet_info=True)
    with pytest.raises(ValueError, match="shared layer"):
        MultilayerCache([InMemoryLayer(max_size=10)]).global_top_keys(3)
    cache = fleet_cache(redis_url, prefix)
    try:
        with pytest.raises(ValueError, match="n must be"):
            cache.global_top_keys(-1)
        with pytest.raises(RuntimeError, match="in use"):
            MultilayerCache([RedisLayer(redis_url, prefix=prefix)], fleet_info=cache.fleet_info)
    finally:
        cache.close()


def test_on_a_cluster_the_fleet_keys_share_one_slot(redis_cluster, prefix) -> None:
    caches = [
        MultilayerCache(
            [
                InMemoryLayer(max_size=100),
                RedisLayer(redis_cluster.url, prefix=prefix, cluster=True),
            ],
            fleet_info=FleetInfo(period_seconds=PERIOD),
        )
        for _ in range(2)
    ]
    client = redis.cluster.RedisCluster.from_url(redis_cluster.url)
    try:
        for _ in range(4):
            read_keys(caches[0], {"x": 30, "y": 5})
            read_keys(caches[1], {"y": 40})
            time.sleep(PERIOD)
        wait_for(lambda: all(cache.fleet_info.counts["published"] >= 2 for cache in caches))
        assert [key for key, _ in caches[0].global_top_keys(2)] == ["y", "x"]
        index, base = fleet_keys(prefix)
        slots = {client.keyslot(index)} | {
            client.keyslot(base + cache.fleet_info.instance) for cache in caches
        }
        assert len(slots) == 1
    finally:
        for cache in caches:
            cache.close()
        client.close()


@pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")
def test_a_forked_child_publishes_as_an_instance_of_its_own(redis_url, prefix) -> None:
    # A pre-fork server's workers: each is an instance of the fleet, the parent too.
    cache = fleet_cache(redis_url, prefix)
    try:
        read_keys(cache, {"parent-key": 20})
        wait_for(lambda: cache.fleet_info.counts["published"] >= 1)
        parent = cache.fleet_info.instance

        def work() -> tuple[str, set[str], bool]:
            child = cache.fleet_info.instance
            read_keys(cache, {"child-key": 20})
            wait_for(lambda: child in {r.instance for r in cache.fleet_info.read()}, 3.0)
            instances = {report.instance for report in cache.fleet_info.read()}
            return child, instances, cache.fleet_info._thread.is_alive()

        child, instances, publishing = in_child(work)
        assert child != parent
        assert instances == {parent, child}
        assert publishing
        published = cache.fleet_info.counts["published"]
        wait_for(lambda: cache.fleet_info.counts["published"] > published)  # parent goes on
    finally:
        cache.close()


def test_instances_started_together_show_within_a_second_not_a_period(redis_url, prefix) -> None:
    # Three processes with the default period (5 s) start at once: each appears in the
    # fleet's view, its hot key in global_top_keys, about a second after it started, and
    # their first publishes are spread over the second half of that second.
    script = textwrap.dedent(
        f"""
        import sys, time
        from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer
        started = time.time()
        cache = MultilayerCache(
            [InMemoryLayer(max_size=100), RedisLayer({redis_url!r}, prefix={prefix!r})],
            fleet_info=True,
        )
        for _ in range(200):
            cache.get_or_load(sys.argv[1], str)
        print(cache.fleet_info.instance, started, cache.fleet_info.period_seconds, flush=True)
        sys.stdin.readline()
        cache.close()
        """
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, f"hot-in-{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": SRC},
        )
        for n in range(3)
    ]
    reader = MultilayerCache([RedisLayer(redis_url, prefix=prefix)])
    try:
        started: dict[str, float] = {}
        for child in children:
            instance, at, period = child.stdout.readline().split()
            assert float(period) == 5.0
            started[instance] = float(at)
        reader.global_top_keys(1)  # makes the reader's FleetInfo (it publishes nothing)
        reports = wait_for(
            lambda: len(found := reader.fleet_info.read()) == 3 and found,
            timeout=FIRST_PUBLISH_SECONDS + 2,
        )
        for report in reports:
            delay = report.published_at - started[report.instance]
            assert FIRST_PUBLISH_SECONDS / 2 - 0.05 <= delay <= FIRST_PUBLISH_SECONDS + 1.0
        assert {key for key, _ in reader.global_top_keys(3)} == {f"hot-in-{n}" for n in range(3)}
    finally:
        for child in children:
            if child.poll() is None:
                child.stdin.write("\n")
                child.stdin.flush()
        for child in children:
            try:
                child.wait(10)
            finally:
                child.kill()
                child.stdin.close()
                child.stdout.close()
        reader.close()


@pytest.mark.parametrize("period", [0.2, 1.0, 5.0, 60.0])
def test_the_first_publish_comes_within_the_second_half_of_its_span(period) -> None:
    span = min(period, FIRST_PUBLISH_SECONDS)
    delays = [first_publish_delay(period) for _ in range(1_000)]
    assert all(span / 2 <= delay <= span for delay in delays)
    assert max(delays) - min(delays) > span / 3  # spread, not one moment for every process


@pytest.mark.parametrize("end", ["exit", "sigterm"])
def test_a_process_that_exits_or_is_stopped_leaves_at_once(redis_url, prefix, end) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer
        from multilayercache.layers.redis.fleetinfo import FleetInfo
        cache = MultilayerCache(
            [InMemoryLayer(max_size=100), RedisLayer({redis_url!r}, prefix={prefix!r})],
            fleet_info=FleetInfo(period_seconds=0.1, ttl_seconds=60),
        )
        print(cache.fleet_info.instance, flush=True)
        sys.stdin.readline()
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    reader = MultilayerCache([RedisLayer(redis_url, prefix=prefix)])
    try:
        instance = child.stdout.readline().strip()
        reader.global_top_keys(1)
        wait_for(lambda: [r.instance for r in reader.fleet_info.read()] == [instance])
        if end == "exit":
            child.stdin.write("\n")
            child.stdin.flush()
        else:
            child.send_signal(signal.SIGTERM)
        child.wait(10)
        assert reader.fleet_info.read() == []  # at once, not after its 60 s TTL
    finally:
        child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()
        reader.close()
