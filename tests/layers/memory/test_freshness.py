"""An L1 entry's life with a refresh point and a stale window (both twins): fresh, then due
for a refresh, then stale (served to the managers only), then gone."""

from __future__ import annotations

import math

import pytest

from multilayercache.core.freshness import Freshness, Lifetime


def test_fresh_due_stale_gone(Layer, clock) -> None:
    l1 = Layer(max_size=10, clock=clock)
    l1.set_entry("k", "v", Lifetime(ttl=10, stale_ttl=20, refresh_after=8))
    assert l1.get("k") == "v" and l1.lookup("k", "miss", "aside") == "v"
    assert l1.get_entry("k").freshness is Freshness.FRESH
    clock.advance(8.5)  # due for a refresh: still fresh for get, not settled for lookup
    assert l1.get("k") == "v" and l1.lookup("k", "miss", "aside") == "aside"
    entry = l1.get_entry("k")
    assert entry.freshness is Freshness.DUE and entry.fresh_for == pytest.approx(1.5)
    clock.advance(2)  # stale: only get_entry still reports it
    assert l1.get("k", "dflt") == "dflt" and l1.lookup("k", "miss", "aside") == "aside"
    entry = l1.get_entry("k")
    assert entry.freshness is Freshness.STALE and entry.gone_in == pytest.approx(19.5)
    assert l1.remaining_ttl("k") == 0.0 and "k" in l1
    clock.advance(20)  # gone
    assert l1.get_entry("k") is None and "k" not in l1 and len(l1) == 0


def test_lookup_steps_aside_without_counting(Layer, clock) -> None:
    l1 = Layer(max_size=10, clock=clock)
    l1.set_entry("k", "v", Lifetime(ttl=1, stale_ttl=5))
    clock.advance(2)
    before = l1.stats()
    assert l1.lookup("k", "miss", "aside") == "aside"
    after = l1.stats()
    assert (after.hits, after.misses) == (before.hits, before.misses)
    assert l1.get_entry("k").value == "v" and l1.stats().hits == before.hits + 1


def test_a_plain_set_or_a_new_ttl_clears_the_freshness_deadlines(Layer, clock) -> None:
    l1 = Layer(max_size=10, clock=clock)
    l1.set_entry("k", "v", Lifetime(ttl=1, stale_ttl=5, refresh_after=0.5))
    l1.set("k", "v2", ttl=10)
    clock.advance(2)
    assert l1.lookup("k", "miss", "aside") == "v2"
    l1.set_entry("k", "v3", Lifetime(ttl=1, stale_ttl=5))
    assert l1.adjust_ttl("k", 10)
    clock.advance(2)
    assert l1.get("k") == "v3" and l1.get_entry("k").freshness is Freshness.FRESH


def test_entries_without_deadlines_never_go_stale(Layer, clock) -> None:
    l1 = Layer(max_size=10, clock=clock)
    l1.set_entry("k", "v", Lifetime(ttl=math.inf))
    clock.advance(1e9)
    entry = l1.get_entry("k")
    assert entry.fresh_for == entry.gone_in == entry.refresh_in == math.inf
    with pytest.raises(ValueError, match="stale_ttl"):
        l1.set_entry("k", "v", Lifetime(ttl=1, stale_ttl=-1))
