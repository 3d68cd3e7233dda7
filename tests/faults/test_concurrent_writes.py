"""Two writes of one key through one cache at once (threads): whichever order they land
in, L1 must end agreeing with L2, as it does after a read races a write (test_races.py).

The probe: writer A's write pauses right after it reached L2 (a real layer, paused by
``test_races.Pausing``), writer B's write of the same key runs to its end, then A goes
on. L2 holds B's write (it landed last there); L1 must then hold B's write too, or
nothing: anything else is served by this instance, and only by it, until L1's TTL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer

from faults.test_races import ABSENT, Pausing

WRITES: dict[str, Callable[[Any, str], Any]] = {
    "set": lambda cache, value: cache.set("k", value),
    "delete": lambda cache, value: cache.delete("k"),
}


# A delete that is overtaken only removes the key from L1 at the end: a miss, always safe.
@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("set", "set"),
        ("set", "delete"),
        ("delete", "set"),
        ("delete", "delete"),
    ],
)
def test_two_writes_of_one_key_at_once_leave_l1_agreeing_with_l2(
    redis_url: str, prefix: str, first: str, second: str
) -> None:
    l1 = InMemoryLayer(max_size=100, name="l1")
    l2 = Pausing(RedisLayer(redis_url, prefix=prefix, name="l2"))
    cache = MultilayerCache([l1, l2])
    cache.set("k", "before")
    writer_ids: list[int] = []
    go = threading.Event()

    def write_a() -> None:
        writer_ids.append(threading.get_ident())
        go.wait(5)
        WRITES[first](cache, "A")

    writer = threading.Thread(target=write_a)
    writer.start()
    while not writer_ids:
        pass
    gate = l2.pause("set_entry" if first == "set" else "delete", thread=writer_ids[0])
    go.set()
    try:
        assert gate.reached.wait(5)  # A is in L2, not in L1 yet
        WRITES[second](cache, "B")
    finally:
        gate.release()
        writer.join()
    in_l2 = l2._layer.get("k", ABSENT)
    in_l1 = l1.get("k", ABSENT)
    cache.close()
    assert in_l1 in (in_l2, ABSENT), f"L1 holds {in_l1!r}, L2 {in_l2!r}"
