"""A signal handler's exception (Ctrl-C's KeyboardInterrupt, Celery's soft time limit, a
SIGALRM timeout) can land in a thread inside the cache at any function's start. The call it
interrupts raises it; the cache goes on: no key is left in flight (its waiters would wait
until their hard timeout, and the interrupted thread would get RecursiveLoadError for it).

The interrupt is raised by a trace function where CPython runs a signal handler (as a Python
function starts), so each test hits its moment every time. (Real signals at random moments
also break InMemoryLayer when they land as it grows its arrays: not fixed here.)"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from multilayercache import InMemoryLayer, LoadOptions, MultilayerCache, RedisLayer


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
