"""The Grafana dashboard in the repository (dashboards/grafana.json) queries only what the
exporter produces, and shows what an operator looks at first."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from multilayercache import InMemoryLayer, MultilayerCache
from multilayercache.observability.metrics import INSIGHT_SPECS, SPECS
from multilayercache.observability.prometheus import register

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "grafana.json"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "summary": ("", "_count", "_sum")}


def exported_names() -> set[str]:
    """The sample names a scrape can show (every family is described even when empty)."""
    registry = CollectorRegistry()
    register(MultilayerCache([InMemoryLayer(max_size=10)]), name="c", registry=registry)
    text = generate_latest(registry).decode()
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        for suffix in SUFFIXES[family.type]
    }


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    found += [
        variable["definition"]
        for variable in dashboard["templating"]["list"]
        if "definition" in variable
    ]
    return found


def test_every_metric_the_dashboard_queries_is_exported() -> None:
    used = {name for query in queries() for name in re.findall(r"\bcache_[a-z0-9_]+", query)}
    assert used, "no query found"
    assert used <= exported_names(), used - exported_names()


def test_every_label_the_dashboard_groups_or_filters_by_exists() -> None:
    labels = {label for spec in SPECS for label in spec.labels} | {"quantile"}
    for query in queries():
        for grouping in re.findall(r"\b(?:by|on) \(([^)]*)\)", query):
            assert {label.strip() for label in grouping.split(",")} <= labels, query
        for label in re.findall(r"([a-z_]+)=~?\"", query):
            assert label in labels, query


def test_it_shows_what_an_operator_looks_at_first() -> None:
    text = " ".join(queries())
    for name in (
        'cache_gets_total{cache=~"$cache",result="hit"}',  # hit ratio per layer
        "cache_evictions_total",
        "cache_size",
        "cache_load_total",
        "cache_load_duration_seconds_sum",
        "cache_stale_served_total",
        "cache_breaker_state",
        "cache_write_queue_depth",
        "cache_dead_letters_total",
    ):
        assert name in text, name


def test_it_shows_every_insight() -> None:
    text = " ".join(queries())
    for spec in INSIGHT_SPECS:
        assert spec.name in text, spec.name
