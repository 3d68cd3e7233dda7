"""The Prometheus collector, scraped over HTTP from prometheus-client's own server after a
real workload (L1 over a real Redis, sync and asyncio, each L1 twin): every metric the
dashboards read is there with its layer label, equal to ``stats()``; no key shows."""

from __future__ import annotations

import math
import random
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import REGISTRY

from multilayercache import InMemoryLayer, MultilayerCache
from multilayercache.observability.metrics import METRIC_NAMES
from multilayercache.observability.prometheus import CacheCollector, register, unregister

from metrics_support import (
    INSIGHT_NAMES,
    SECRET_KEY,
    check_insights_moved,
    check_workload_counted,
    expected_insight_samples,
    expected_samples,
)


@pytest.fixture
def endpoint() -> Iterator[tuple[CollectorRegistry, str]]:
    """A registry of its own, served over HTTP on a free port."""
    registry = CollectorRegistry()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield registry, f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def scrape(url: str) -> tuple[str, dict[tuple[str, frozenset], float]]:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    samples = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def test_a_scrape_shows_every_metric_equal_to_stats(worked: Any, endpoint: Any) -> None:
    registry, url = endpoint
    register(worked, name="orders", registry=registry)
    text, scraped = scrape(url)
    stats = worked.stats()
    check_workload_counted(stats)
    expected = expected_samples(stats, "orders")
    missing = set(expected) - set(scraped)
    assert not missing, sorted(missing)
    for sample, value in expected.items():
        assert math.isclose(scraped[sample], value), (sample, scraped[sample], value)
    # Every name the dashboards need, with each layer's label where it is per layer.
    for name in ("cache_gets_total", "cache_puts_total", "cache_evictions_total"):
        assert {dict(labels)["layer"] for metric, labels in scraped if metric == name} == {
            "l1",
            "l2",
        }
    names = {name for name, _ in scraped}
    for name in ("cache_load_duration_seconds", "cache_size", "cache_breaker_state"):
        assert name in names
    assert SECRET_KEY not in text
    assert "item:" not in text and "garbage" not in text  # no key at all


def test_a_cache_without_insights_exports_no_insight_series(worked: Any, endpoint: Any) -> None:
    registry, url = endpoint
    register(worked, name="orders", registry=registry)
    text, scraped = scrape(url)
    assert not {name for name, _ in scraped} & set(INSIGHT_NAMES)
    for name in INSIGHT_NAMES:  # described all the same: one set of names whatever the setup
        assert f"# TYPE {name} " in text


def test_a_scrape_shows_every_insight_equal_to_insights(insightful: Any, endpoint: Any) -> None:
    registry, url = endpoint
    register(insightful, name="orders", registry=registry)
    text, scraped = scrape(url)
    report = insightful.insights()
    check_insights_moved(report)
    expected = expected_insight_samples(report, "orders")
    exported = {series for series in scraped if series[0] in INSIGHT_NAMES}
    assert exported == set(expected), sorted(exported ^ set(expected))
    for sample, value in expected.items():
        assert math.isclose(scraped[sample], value), (sample, scraped[sample], value)
    assert {name for name, _ in exported} == set(INSIGHT_NAMES)
    assert "item:" not in text and "cold:" not in text  # a spike's key is never a label
    # The stats are there as well, as without insights.
    stats = insightful.stats()
    for sample, value in expected_samples(stats, "orders").items():
        assert math.isclose(scraped[sample], value), sample


def test_every_name_exposed_is_a_declared_one(worked: Any, endpoint: Any) -> None:
    registry, url = endpoint
    register(worked, name="orders", registry=registry)
    _, scraped = scrape(url)
    exposed = {name for name, _ in scraped}
    declared = METRIC_NAMES | {
        f"{name}_{suffix}" for name in METRIC_NAMES for suffix in ("count", "sum")
    }
    assert exposed <= declared, exposed - declared


def test_caches_and_bare_layers_share_one_registry(endpoint: Any) -> None:
    registry, url = endpoint
    sessions = InMemoryLayer(max_size=100, name="sessions")
    orders = MultilayerCache([InMemoryLayer(max_size=100, name="l1")])
    sessions.set("s", 1)
    sessions.get("s")
    orders.get("o")
    first = register(orders, name="orders", registry=registry)
    assert register(sessions, name="sessions", registry=registry) is first
    _, scraped = scrape(url)
    hits = {
        dict(labels)["cache"]: value
        for (name, labels), value in scraped.items()
        if name == "cache_gets_total" and dict(labels)["result"] == "hit"
    }
    assert hits == {"orders": 0, "sessions": 1}
    assert ("cache_load_total", frozenset({"cache": "orders", "result": "success"}.items())) in (
        scraped
    )
    with pytest.raises(ValueError, match="already"):
        register(sessions, name="orders", registry=registry)
    unregister("sessions", registry=registry)
    _, scraped = scrape(url)
    assert {dict(labels)["cache"] for _, labels in scraped} == {"orders"}


def test_a_cache_whose_stats_fail_costs_the_others_nothing(
    endpoint: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def stats(self) -> Any:
            raise RuntimeError("stats broke")

    registry, url = endpoint
    collector = CacheCollector(Broken(), "broken")
    registry.register(collector)
    collector.add(InMemoryLayer(max_size=10, name="fine"), "fine")
    _, scraped = scrape(url)
    assert {dict(labels)["cache"] for _, labels in scraped} == {"fine"}
    assert "stats broke" in caplog.text


def test_bad_arguments_are_refused_by_name() -> None:
    collector = CacheCollector()
    with pytest.raises(TypeError, match="stats"):
        collector.add(object(), "x")
    with pytest.raises(ValueError, match="name"):
        collector.add(InMemoryLayer(max_size=10), "")
    with pytest.raises(KeyError):
        collector.remove("nobody")


def test_nothing_is_registered_at_import() -> None:
    names = {sample.name for family in REGISTRY.collect() for sample in family.samples}
    assert not names & METRIC_NAMES


def test_scrapes_during_traffic_of_8_threads_never_run_a_counter_backwards(
    endpoint: Any,
) -> None:
    registry, url = endpoint
    cache = MultilayerCache([InMemoryLayer(max_size=200, name="l1")])
    register(cache, name="busy", registry=registry)
    stop = threading.Event()
    errors: list[BaseException] = []

    def traffic(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                key = rng.randrange(1_000)
                if rng.random() < 0.2:
                    cache.set(key, key)
                elif rng.random() < 0.5:
                    cache.get_or_load(key, str)
                else:
                    cache.get(key)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=traffic, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    last: dict[tuple[str, frozenset], float] = {}
    try:
        for _ in range(20):
            _, scraped = scrape(url)
            for series, value in scraped.items():
                if series[0].endswith("_total"):
                    assert value >= last.get(series, 0), series
                    last[series] = value
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert not errors
    _, scraped = scrape(url)
    stats = cache.stats()
    hits = frozenset({"cache": "busy", "layer": "l1", "result": "hit"}.items())
    assert scraped[("cache_gets_total", hits)] == stats.layer("l1").hits > 0
