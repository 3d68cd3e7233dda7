"""A signal handler's exception (Ctrl-C's KeyboardInterrupt, Celery's soft time limit, a
SIGALRM timeout) can land in a thread inside the cache at any function's start. The call it
interrupts raises it; the cache goes on: no key is left in flight (its waiters would wait
until their hard timeout, and the interrupted thread would get RecursiveLoadError for it).

The interrupt is raised by a trace function where CPython runs a signal handler (as a Python
function starts), so each test hits its moment every time. (Real signals at random moments
break InMemoryLayer when they landed as it grew its arrays: the last test.)"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from multilayercache import (
    InMemoryLayer,
    LayerPolicy,
    LoadOptions,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
)

from invariants import check_invariants
from support import IMPLEMENTATIONS


def interrupting(function_name: str, file_part: str) -> Callable[..., Any]:
    """A trace function that raises KeyboardInterrupt as ``function_name`` (of a file whose
    path contains ``file_part``) starts, once."""

    def trace(frame: FrameType, event: str, arg: Any) -> None:
        code = frame.f_code
        if event == "call" and code.co_name == function_name and file_part in code.co_filename:
            sys.settrace(None)
            raise KeyboardInterrupt

    return trace


@pytest.fixture
def cache(redis_url: str, prefix: str) -> Iterator[MultilayerCache]:
    cache = MultilayerCache(
        [InMemoryLayer(max_size=100), RedisLayer(redis_url, prefix=prefix)],
        load_options=LoadOptions(hard_timeout=2),
    )
    yield cache
    cache.close()


@pytest.mark.parametrize("where", ["end", "is_set"])
def test_an_interrupt_as_a_load_ends_leaves_nothing_in_flight(cache, where) -> None:
    waiting = threading.Event()

    def slow(key: str) -> str:
        waiting.wait(5)  # until another thread waits for this load
        return "v"

    other: list[Any] = []
    joiner = threading.Thread(target=lambda: other.append(cache.get_or_load("k", slow)))
    trace = interrupting(where, "singleflight" if where == "end" else "threading")

    def load(key: str) -> str:
        joiner.start()
        while not cache._driver.flight.coalesced:
            threading.Event().wait(0.001)
        waiting.set()
        sys.settrace(trace)
        return "v"

    with pytest.raises(KeyboardInterrupt):
        cache.get_or_load("k", load)
    sys.settrace(None)
    joiner.join(5)
    assert other == ["v"]  # woken, not left to its hard timeout
    assert cache.in_flight == 0
    cache.delete("k")  # (as its L1 entry would expire)
    assert cache.get_or_load("k", lambda key: "again") == "again"  # no RecursiveLoadError


def interrupting_growth(events: int, file_parts: tuple[str, ...]) -> Callable[..., Any]:
    """A trace function that raises KeyboardInterrupt at the ``events``-th call or line
    event in the layer's growth (its ``grow`` and slot allocation, or the buffers they
    allocate: the only Python code a compiled layer runs there), once."""
    left = [events]
    growth = {"grow", "_allocate_slot", "_materialize", "full", "zeros", "_grown"}

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event in ("call", "line"):
            left[0] -= 1
            if left[0] == 0:
                sys.settrace(None)
                frame.f_trace = None
                raise KeyboardInterrupt
        return local

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        if code.co_name in growth and any(part in code.co_filename for part in file_parts):
            return local(frame, event, arg)
        return None

    return trace


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda impl: impl.name)
@pytest.mark.parametrize("events", [1, 2, 3, 5, 8, 13, 21, 34])
def test_an_interrupt_while_the_memory_layer_grows_leaves_it_whole(impl, events) -> None:
    # Found with SIGALRM at random moments: the compiled layer then raised numpy's
    # ValueError on later sets and crashed (segfault); the pure one raised IndexError.
    parts = ("_core/buffers", "layers/memory/_", "_core/_")
    layer = impl.InMemoryLayer(max_size=100_000)
    written = 0
    sys.settrace(interrupting_growth(events, parts))
    try:
        while written < 50_000:
            layer.set(written, written)
            written += 1
    except KeyboardInterrupt:
        pass
    finally:
        sys.settrace(None)
    assert written < 50_000, "no interrupt landed"
    for key in range(written + 1, written + 5_000):  # the growth goes on, whole
        layer.set(key, key)
    assert all(layer.get(key) == key for key in range(written))
    assert all(layer.get(key) == key for key in range(written + 1, written + 5_000))
    check_invariants(layer)


def interrupting_where_python_would(events: int, file_parts: tuple[str, ...]) -> Any:
    """A profile function that raises KeyboardInterrupt at the ``events``-th place, in code of
    a file whose path contains one of ``file_parts``, where CPython would run a signal
    handler: as a Python function starts, and as a call returns (C calls too), once."""
    left = [events]

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event in ("call", "return", "c_return") and any(
            part in frame.f_code.co_filename for part in file_parts
        ):
            left[0] -= 1
            if left[0] == 0:
                sys.setprofile(None)
                raise KeyboardInterrupt

    return profile


def test_interrupts_inside_write_behind_sets_lose_no_acknowledged_write(
    redis_url: str, prefix: str
) -> None:
    # Found with SIGALRM at random moments: a set interrupted halfway through the queue's
    # bookkeeping left a key ready but not in its order; the sender then died (IndexError,
    # KeyError), flush() returned False and hundreds of acknowledged writes never landed.
    l2 = RedisLayer(redis_url, prefix=prefix)
    cache = MultilayerCache(
        [InMemoryLayer(max_size=10_000), l2], [None, LayerPolicy(write=WriteBehind(max_delay=0.01))]
    )
    parts = ("core/writequeue", "sync/writeback", "core/plans/writes", "sync/cache")
    acknowledged, interrupted = [], 0
    try:
        for events in range(1, 80):
            for rewrite in (False, True):  # a new key, then a pending key written again
                key = f"k{events // 2 if rewrite else events}"
                sys.setprofile(interrupting_where_python_would(events, parts))
                try:
                    cache.set(key, events)
                except KeyboardInterrupt:
                    interrupted += 1
                    continue
                finally:
                    sys.setprofile(None)
                acknowledged.append((key, events))
        # Every place in a set was hit (the last sets went through: past its last place).
        assert interrupted >= 20 and acknowledged[-1] == ("k39", 79)
        assert cache.flush(timeout=10)
        latest = dict(acknowledged)
        assert {key: l2.get(key) for key in latest} == latest
    finally:
        cache.close()
