"""``InMemoryLayer.drop_later``: invalidations that cost the same for 10 keys or all of
them (``layers/memory/sweep.py``): never read again, a key written since survives them,
and the sweep ends after a bounded number of operations."""

from __future__ import annotations

import threading

import pytest

from multilayercache.layers.memory.sweep import SWEEP_STEP

from invariants import check_invariants


def test_invalidated_keys_miss_at_once_and_the_rest_still_hit(Layer) -> None:
    layer = Layer(max_size=1_000)
    for n in range(400):
        layer.set(f"user:{n}", n)
        layer.set(f"page:{n}", n)
    layer.drop_later([{f"user:{n}" for n in range(0, 400, 2)}], prefixes=("page:1",))
    for n in range(400):
        assert layer.get(f"user:{n}") == (None if n % 2 == 0 else n)
        assert layer.get(f"page:{n}") == (None if str(n).startswith("1") else n)
    assert len(layer) == 800 - 200 - 111  # page:1, page:10-19, page:100-199
    check_invariants(layer)


def test_every_kind_of_operation_ignores_an_invalidated_entry(Layer) -> None:
    layer = Layer(max_size=100)
    for key in "abcdef":
        layer.set(key, 1)
    layer.drop_later([set("abcdef")])
    assert "a" not in layer
    assert layer.get_entry("b") is None
    assert layer.remaining_ttl("c") is None
    assert layer.touch("d") is False
    assert layer.add("e", 2) is True and layer.get("e") == 2
    assert layer.incr("f", 5) == 5  # a new counter: the old value is not counted on
    assert sorted(layer.keys()) == ["e", "f"]


def test_a_key_written_after_the_invalidation_survives_it(Layer) -> None:
    layer = Layer(max_size=10_000)
    for n in range(5_000):
        layer.set(n, "old")
    layer.drop_later([set(range(5_000))])
    layer.set(4_999, "new")  # the sweep has not reached its slot yet
    for _ in range(5_000 // SWEEP_STEP + 1):
        layer.get(-1)
    assert layer.get(4_999) == "new"
    assert len(layer) == 1


def test_a_later_invalidation_applies_to_keys_rescued_from_an_earlier_one(Layer) -> None:
    layer = Layer(max_size=100)
    layer.set("k", 1)
    layer.drop_later([{"k"}])
    layer.set("k", 2)
    assert layer.get("k") == 2
    layer.drop_later([{"k"}])
    assert layer.get("k") is None


def test_the_sweep_ends_after_a_bounded_number_of_operations(Layer) -> None:
    layer = Layer(max_size=2_000)
    for n in range(1_000):
        layer.set(n, n)
    layer.drop_later([set(range(0, 1_000, 2))])
    for _ in range(1_000 // SWEEP_STEP + 1):
        layer.get(10_000)  # misses of other keys sweep too
    assert layer.stats().size == 500  # removed without reading or listing them
    check_invariants(layer)


def test_clear_ends_pending_invalidations(Layer) -> None:
    layer = Layer(max_size=100)
    layer.set("a", 1)
    layer.drop_later([{"a", "b"}])
    layer.clear()
    layer.set("b", 2)
    assert layer.get("b") == 2


def test_a_prefix_that_is_not_a_str_is_refused_and_nothing_changes(Layer) -> None:
    layer = Layer(max_size=100)
    layer.set("a", 1)
    with pytest.raises(TypeError, match="prefix must be a str"):
        layer.drop_later([], prefixes=(b"a",))
    assert layer.get("a") == 1


def test_threads_reading_and_writing_during_a_sweep_never_see_an_invalidated_value(
    Layer,
) -> None:
    layer = Layer(max_size=20_000)
    keys = [f"k{n}" for n in range(10_000)]
    for key in keys:
        layer.set(key, "old")
    stale: list[str] = []
    start = threading.Barrier(5)

    def reader(offset: int) -> None:
        start.wait()
        for key in keys[offset::4]:
            if layer.get(key) == "old":
                stale.append(key)

    def writer() -> None:
        start.wait()
        for key in keys[::3]:
            layer.set(key, "new")

    layer.drop_later([set(keys)])
    threads = [threading.Thread(target=reader, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stale == []
    assert set(layer.keys()) <= set(keys[::3])  # only what was written since
    check_invariants(layer)
