"""The asyncio plan-free miss of a cache of one in-process layer (``AsyncMultilayerCache.
_load_alone``) against the plan it skips: on random operations, a cache that loads without
the plan and one made to always run it answer, count and hold failures off alike."""

from __future__ import annotations

import asyncio
import dataclasses
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache import AsyncMultilayerCache, InMemoryLayer, LoadOptions


class Refused(Exception):
    """What the test's failing loader raises."""


OPERATIONS = ["get", "set", "set ttl", "set tags", "load", "load ttl", "load timed", "fail",
              "cached", "delete", "invalidate", "ttl policy"]  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 5)), max_size=40),
    fail_safe=st.booleans(),
)
def test_a_lone_layer_loads_as_the_plan_would(ops, fail_safe) -> None:
    asyncio.run(_compare(ops, fail_safe))


async def _compare(ops: list[tuple[str, int]], fail_safe: bool) -> None:
    options = LoadOptions(fail_safe=fail_safe, fail_safe_throttle=60)
    caches = [
        AsyncMultilayerCache([InMemoryLayer(max_size=50)], load_options=options) for _ in "ab"
    ]
    caches[1]._loads_alone = False  # the reference: every miss runs the plan
    assert caches[0]._loads_alone
    loads: list[list[int]] = [[], []]

    def halving(calls: list[int]):
        async def half(n: int) -> int:
            calls.append(n)
            return n // 2

        return half

    even = lambda value: value % 2 == 0  # noqa: E731 (@cached keeps only even halves)
    halves = [
        cache.cached(condition=even)(halving(calls))
        for cache, calls in zip(caches, loads, strict=True)
    ]

    async def loaded(key):
        return f"loaded {key}"

    async def refuse(key):
        raise Refused(key)

    for op, key in ops:
        seen = []
        for index, cache in enumerate(caches):
            try:
                if op == "get":
                    seen.append(await cache.get(key, "default"))
                elif op.startswith("set"):
                    ttl, tags = (30 if op == "set ttl" else None), (("t",) if "tags" in op else ())
                    seen.append(await cache.set(key, f"set {key}", ttl=ttl, tags=tags))
                elif op == "load timed":  # a caller the plan serves in any case
                    seen.append(await cache.get_or_load(key, loaded, hard_timeout=5))
                elif op.startswith("load"):
                    ttl = 60 if op == "load ttl" else None
                    seen.append(await cache.get_or_load(key, loaded, ttl=ttl))
                elif op == "cached":
                    seen.append(await halves[index](key))
                elif op == "fail":
                    seen.append(await cache.get_or_load(key, refuse))
                elif op == "delete":
                    seen.append(await cache.delete(key))
                elif op == "invalidate":
                    seen.append(await cache.invalidate_tags("t"))
                else:
                    seen.append(cache.update_policy(0, ttl=key + 1).ttl)
            except Exception as error:
                seen.append((type(error), str(error)))
            left = await cache.remaining_ttl(key)
            seen.append(left if left is None or left == math.inf else math.ceil(left))
        assert seen[: len(seen) // 2] == seen[len(seen) // 2 :], op
    assert loads[0] == loads[1]
    stats = [dataclasses.replace(cache.stats(), load_latency=None) for cache in caches]
    assert stats[0] == stats[1]
    assert all(cache.in_flight == 0 for cache in caches)
