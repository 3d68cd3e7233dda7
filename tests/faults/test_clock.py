"""Clocks that jump. ``time.monotonic`` cannot, but an injected clock can (the L1 takes
one), and wall-clock time, which every process stamps on the envelopes it writes to the
shared layer, differs between processes (clock skew: an NTP step, a VM restored, a host
with a dead time daemon).

What the caller sees: an L1 whose clock jumps back keeps its entries (never an early
expiry), one whose clock jumps ahead (by a century) expires them all at once, in bounded
time, structure intact; the manager over it reloads a key once for all callers. Between
processes: a value written by a process whose clock is ahead looks fresher than it is, but
is never served after Redis dropped it (Redis expires keys by a relative PX, not by the
envelope); one written by a process whose clock is behind looks older, so readers reload
it (once, coalesced) and then serve their own write. No caller gets an error or a value
of another key either way.

The breaker, the write queue and the fail-safe throttle read ``time.monotonic`` (their
injected clocks are exercised in tests/core)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from multilayercache import InMemoryLayer, LayerPolicy, LoadOptions, MultilayerCache, RedisLayer

from faults.forking import in_child
from invariants import check_invariants
from support import FakeClock, wait_until

pytestmark = pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")

HOUR = 3600.0
CENTURY = 100 * 365 * 24 * HOUR


def test_an_l1_clock_that_jumps_back_and_ahead(Layer: type) -> None:
    clock = FakeClock()
    l1 = Layer(max_size=1_000, ttl=60, clock=clock)
    for n in range(500):
        l1.set(f"k{n}", n, ttl=n % 10 + 1)  # 1 to 10 s
    l1.set("forever", "kept", ttl=float("inf"))
    clock.advance(-HOUR)  # back: nothing expires early
    assert all(l1.get(f"k{n}") == n for n in range(500))
    clock.advance(HOUR + 5.5)  # 5.5 s after the writes: the 1-5 s ones are gone
    assert [n for n in range(500) if l1.get(f"k{n}") is not None] == [
        n for n in range(500) if n % 10 + 1 > 5.5
    ]
    start = time.monotonic()
    clock.advance(CENTURY)
    assert [n for n in range(500) if l1.get(f"k{n}") is not None] == []
    l1.set("new", "value", ttl=1)
    assert l1.get("new") == "value" and l1.get("forever") == "kept"
    assert len(l1) == 2  # the expired ones' memory is reclaimed
    assert time.monotonic() - start < 1.0
    check_invariants(l1)


def test_the_manager_over_an_l1_clock_that_jumps(Layer: type) -> None:
    """Stale-while-revalidate and refresh-ahead read the L1's deadlines on its clock: a
    jump ahead past the stale window makes every caller wait for one load; a jump back
    makes the value fresh again, served without a load."""
    clock = FakeClock()
    l1 = Layer(max_size=100, clock=clock)
    cache = MultilayerCache([l1], [LayerPolicy(ttl=10, stale_ttl=10, refresh_ahead=0.5)])
    calls: list[str] = []
    release = threading.Event()

    def load(key: str) -> str:
        calls.append(key)
        release.wait(5)
        return f"{key}#{len(calls)}"

    cache.set("k", "k#0")
    clock.advance(-HOUR)
    assert cache.get_or_load("k", load) == "k#0" and calls == []
    clock.advance(HOUR + 25)  # past fresh (10 s) and stale (10 s more)
    answers: list[Any] = []
    readers = [
        threading.Thread(target=lambda: answers.append(cache.get_or_load("k", load)))
        for _ in range(20)
    ]
    for reader in readers:
        reader.start()
    assert wait_until(lambda: calls == ["k"], 5) is not None
    release.set()
    for reader in readers:
        reader.join()
    assert answers == ["k#1"] * 20 and calls == ["k"]
    clock.advance(-HOUR)  # and back again: fresh, no load
    assert cache.get_or_load("k", load) == "k#1" and calls == ["k"]
    check_invariants(l1)


def write_with_a_skewed_clock(url: str, prefix: str, skew: float, ttl: float, stale: float):
    """In a forked child whose wall clock is ``skew`` seconds off: write ``k`` through a
    cache, as a process on another host would."""
    real_time, real_time_ns = time.time, time.time_ns
    time.time = lambda: real_time() + skew  # type: ignore[assignment]
    time.time_ns = lambda: real_time_ns() + int(skew * 1e9)  # type: ignore[assignment]
    cache = MultilayerCache(
        [InMemoryLayer(max_size=10), RedisLayer(url, prefix=prefix)],
        [None, LayerPolicy(ttl=ttl, stale_ttl=stale)],
    )
    cache.set("k", "from the skewed process")
    cache.close()
    return "written"


def reader(
    url: str, prefix: str, options: LoadOptions | None = None
) -> tuple[MultilayerCache, RedisLayer]:
    l2 = RedisLayer(url, prefix=prefix, name="l2")
    policy = LayerPolicy(ttl=60, stale_ttl=60)
    layers = [InMemoryLayer(max_size=10, name="l1"), l2]
    return MultilayerCache(layers, [None, policy], load_options=options), l2


def test_a_value_from_a_process_whose_clock_is_ahead_is_never_served_after_redis_drops_it(
    redis_url: str, prefix: str
) -> None:
    assert in_child(lambda: write_with_a_skewed_clock(redis_url, prefix, HOUR, 0.3, 0.3)) == (
        "written"
    )
    cache, l2 = reader(redis_url, prefix)
    # Fresh for an hour and more by its envelope; Redis keeps it 0.6 s (0.3 fresh, 0.3
    # stale), whatever the clocks say.
    assert l2.get_entry("k").fresh_for > HOUR - 5
    assert cache.get("k") == "from the skewed process"
    gone = wait_until(lambda: l2.get_entry("k") is None, 2.0)
    assert gone is not None and gone < 1.0
    cache.layers[0].delete("k")  # (L1 keeps its copy for its own TTL: drop it)
    assert cache.get("k") is None
    assert cache.get_or_load("k", lambda key: "reloaded") == "reloaded"
    cache.close()


@pytest.mark.parametrize("swr", [True, False], ids=["stale-while-revalidate", "wait"])
def test_a_value_from_a_process_whose_clock_is_behind_is_reloaded_once(
    redis_url: str, prefix: str, swr: bool
) -> None:
    """Its envelope says it went stale (and gone) an hour ago, though Redis holds it: a
    plain ``get`` misses; ``get_or_load`` serves it stale while one background reload runs
    (stale-while-revalidate), or has every caller wait for one load; then this process's
    own write is what Redis holds."""
    assert in_child(lambda: write_with_a_skewed_clock(redis_url, prefix, -HOUR, 60, 60)) == (
        "written"
    )
    cache, l2 = reader(redis_url, prefix, LoadOptions(stale_while_revalidate=swr))
    entry = l2.get_entry("k")  # Redis holds it (for 120 s) ...
    assert entry is not None and entry.gone_in < 0  # ... but by its envelope it is gone
    assert cache.get("k") is None
    calls: list[str] = []
    answers: list[Any] = []

    def load(key: str) -> str:
        calls.append(key)
        time.sleep(0.05)
        return "reloaded"

    # Stale-while-revalidate: one caller, answered at once. (Callers arriving while its
    # refresh runs may get None: test_soak's xfail, test_a_caller_joining_a_running_...)
    callers = 1 if swr else 10
    readers = [
        threading.Thread(target=lambda: answers.append(cache.get_or_load("k", load)))
        for _ in range(callers)
    ]
    for thread in readers:
        thread.start()
    for thread in readers:
        thread.join()
    assert cache.wait_idle(5)
    first = "from the skewed process" if swr else "reloaded"
    assert answers == [first] * callers and calls == ["k"]
    cache.layers[0].delete("k")
    assert cache.get("k") == "reloaded"  # now from L2: this process's own write
    cache.close()
