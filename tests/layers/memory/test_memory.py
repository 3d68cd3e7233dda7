"""What an L1 costs in memory (issue 24), and that the way it is allocated keeps the cache
correct: RSS per entry measured in a fresh process as ``benchmarks/compare_peers.py``
section 3 does; a forked child's writes stay its own; freshness deadlines arrive on a
cache already full of entries without them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from multilayercache import _core
from multilayercache.core.freshness import Freshness, Lifetime

from faults.forking import in_child

# The layer's RSS growth per entry, measured like compare_peers.py section 3 (keys made
# beforehand, one shared value, ``get`` then ``set``); ``docs/memory.md`` accounts for it.
RSS_PROBE = r"""
import gc, json, sys
from multilayercache import InMemoryLayer
entries = int(sys.argv[1])
keys = list(range(entries))
value = object()
gc.collect()

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096

before = rss()
layer = InMemoryLayer(max_size=entries)
for key in keys:
    layer.get(key)
    layer.set(key, value)
gc.collect()
assert len(layer) == entries
print(json.dumps((rss() - before) / entries))
"""

needs_proc = pytest.mark.skipif(
    not Path("/proc/self/statm").exists() or not _core.COMPILED,
    reason="RSS is read from /proc; the bound is the compiled layer's",
)


def rss_per_entry(entries: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, str(entries)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return float(json.loads(done.stdout))


@needs_proc
def test_half_a_million_entries_cost_at_most_90_bytes_each() -> None:
    # Issue 24's bound, where the index is a quarter full (16 bytes per entry of it).
    assert rss_per_entry(500_000) <= 90


@needs_proc
def test_tables_left_behind_by_growth_go_back_to_the_system() -> None:
    # 600,000 entries: the index has just doubled (28 bytes per entry of it, docs/memory.md),
    # and every table was grown by copies whose old blocks, from malloc, stayed resident
    # (118 bytes per entry; 98 once each large table has a mapping of its own).
    assert rss_per_entry(600_000) <= 100


def test_a_forked_childs_writes_leave_the_parents_cache_alone(Layer) -> None:
    # Large enough that every per-entry table has a memory mapping of its own
    # (_core/buffers.py): private mappings, copied on write like malloc's memory.
    l1 = Layer(max_size=50_000)
    for key in range(50_000):
        l1.set(key, f"parent {key}")

    def child() -> list[object]:
        for key in range(0, 50_000, 2):
            l1.delete(key)
        for key in range(50_000, 75_000):
            l1.set(key, "child")
        return [l1.get(0), l1.get(50_000), len(l1)]

    assert in_child(child) == [None, "child", 50_000]
    assert len(l1) == 50_000 and l1.get(50_000) is None
    assert all(l1.get(key) == f"parent {key}" for key in range(50_000))


def test_freshness_deadlines_arrive_on_a_cache_full_of_entries_without_them(Layer, clock) -> None:
    # The freshness table exists only from the first stale window or refresh point on,
    # and must then cover every slot, old and new.
    l1 = Layer(max_size=1_000, clock=clock)
    for key in range(1_000):
        l1.set(key, key)
    l1.set_entry(999, "late", Lifetime(ttl=10, stale_ttl=20, refresh_after=5))
    l1.set_entry(5, "early", Lifetime(ttl=10, stale_ttl=20))
    clock.advance(7)
    assert l1.get_entry(999).freshness is Freshness.DUE
    assert l1.get_entry(5).freshness is Freshness.FRESH
    assert l1.get_entry(998).freshness is Freshness.FRESH and l1.get_entry(998).fresh_for > 1e9
    clock.advance(5)
    assert l1.get(999) is None and l1.get(5) is None and l1.get(998) == 998
    assert l1.get_entry(5).freshness is Freshness.STALE
    l1.set(5, "plain")  # a plain write clears its deadlines
    clock.advance(100)
    assert l1.get(5) == "plain" and 999 not in l1 and len(l1) == 999
