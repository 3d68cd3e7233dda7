"""Batch reads on a Redis Cluster that ride a slot migration (sync and asyncio).

A cluster splits ``get_many`` into one ``MGET`` per hash slot, sent in one pipeline (one
round trip per node, redis-py's ``mget_nonatomic``). While a slot moves between nodes
(``redis-cli --cluster reshard``, a rebalance), its keys are half on the old node, half on
the new one: a single-key command is redirected (``ASK``) to the right one, but an
``MGET`` of several of its keys gets ``TRYAGAIN`` from both until the move ends, and
redis-py retries it until it gives up ("TTL exhausted", about 0.4 s later). Failing the
whole batch for that would turn every key of every slot into a miss (a loader storm) for
as long as the migration lasts.

So a batch is read per slot, and a slot whose ``MGET`` was refused for a moving slot
(``TRYAGAIN``, ``ASK``, ``MOVED``, or redis-py giving up on them) is read again key by key,
in one pipeline of ``GET``s, which follows each key's redirection. That slot is then
remembered as moving for ``MOVING_SLOT_SECONDS``: the batches that follow read it key by
key at once, without first paying the refused ``MGET``. Every other slot keeps its one
``MGET``. An unreachable node still fails the batch (a ``ConnectionError``): that is an
outage, which the breaker and the retry policy handle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import AskError, ClusterError, RedisClusterException, TryAgainError

MOVING_SLOT_SECONDS = 2.0
"""How long a slot that refused an ``MGET`` is read key by key (a migration moves its keys
in batches; each batch's refusal extends it)."""

SLOT_MOVING_ERRORS = (TryAgainError, AskError, ClusterError)
"""Answers that mean "this slot is moving": ``MovedError`` is an ``AskError``, and redis-py
raises ``ClusterError("TTL exhausted")`` once it gave up redirecting."""


class MovingSlots:
    """The slots seen moving lately (IO-free; a dict of slot -> until when, in monotonic
    seconds). Reads and writes of a dict are atomic, so threads share one unlocked."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._until: dict[int, float] = {}

    def note(self, slot: int) -> None:
        self._until[slot] = self.clock() + MOVING_SLOT_SECONDS

    def __contains__(self, slot: int) -> bool:
        until = self._until.get(slot)
        if until is None:
            return False
        if until <= self.clock():
            self._until.pop(slot, None)
            return False
        return True


def node_of(client: Any, redis_key: str) -> str | None:
    """The name (``host:port``) of the primary serving ``redis_key`` by the client's slot
    map (no IO), or ``None`` when the map has no node for its slot (yet)."""
    try:
        return str(client.get_node_from_key(redis_key).name)
    except (RedisClusterException, AttributeError):  # a slot not covered, a map not loaded
        return None


class ClusterRouting:
    """What both Redis layers tell the manager about a cluster (IO-free)."""

    client: Any
    is_cluster: bool
    redis_key: Callable[[Any], str]

    def node_of(self, key: Any) -> str | None:
        """On a cluster, the node (``host:port``) that serves ``key`` now, by the client's
        slot map (no IO): the manager keeps a circuit breaker per node. ``None`` on a
        single server, or for a key this layer refuses (the call itself then says why)."""
        if not self.is_cluster:
            return None
        try:
            redis_key = self.redis_key(key)
        except (TypeError, ValueError):
            return None
        return node_of(self.client, redis_key)


def by_slot(client: Any, redis_keys: list[str]) -> dict[int, list[int]]:
    """The positions of ``redis_keys``, grouped by hash slot (computed locally)."""
    slots: dict[int, list[int]] = {}
    for position, redis_key in enumerate(redis_keys):
        slots.setdefault(client.keyslot(redis_key), []).append(position)
    return slots


def _plan(
    client: Any, redis_keys: list[str], moving: MovingSlots
) -> tuple[Any, list[tuple[int, list[int], bool]]]:
    """A pipeline reading ``redis_keys`` (an MGET per slot, a GET per key of a moving
    slot) and, per queued part, ``(slot, positions, by_key)``."""
    pipeline = client.pipeline()
    parts = []
    for slot, positions in by_slot(client, redis_keys).items():
        by_key = slot in moving
        if by_key:
            for position in positions:
                pipeline.execute_command("GET", redis_keys[position])
        else:
            keys = [redis_keys[position] for position in positions]
            node = client.nodes_manager.get_node_from_slot(slot)
            pipeline.execute_command("MGET", *keys, target_nodes=[node])
        parts.append((slot, positions, by_key))
    return pipeline, parts


def _gather(
    redis_keys: list[str],
    parts: list[tuple[int, list[int], bool]],
    replies: list[Any],
    moving: MovingSlots,
) -> tuple[list[Any], list[int]]:
    """The values read, by position, and the positions still to read key by key (their
    slot's MGET was refused: it is moving). Any other error is raised."""
    values: list[Any] = [None] * len(redis_keys)
    again: list[int] = []
    replies_left = iter(replies)
    for slot, positions, by_key in parts:
        if by_key:
            answers = [next(replies_left) for _ in positions]
        else:
            reply = next(replies_left)
            if isinstance(reply, SLOT_MOVING_ERRORS):
                moving.note(slot)
                again.extend(positions)
                continue
            answers = [reply] if isinstance(reply, Exception) else reply
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        for position, answer in zip(positions, answers, strict=True):
            values[position] = answer
    return values, again


def read_many(client: Any, redis_keys: list[str], moving: MovingSlots) -> list[Any]:
    """The values of ``redis_keys`` (``None`` for a missing key), in order, on a
    ``redis.cluster.RedisCluster``; see the module docstring."""
    pipeline, parts = _plan(client, redis_keys, moving)
    values, again = _gather(redis_keys, parts, pipeline.execute(raise_on_error=False), moving)
    if again:
        pipeline = client.pipeline()
        for position in again:
            pipeline.execute_command("GET", redis_keys[position])
        for position, value in zip(again, pipeline.execute(), strict=True):
            values[position] = value
    return values


async def read_many_async(client: Any, redis_keys: list[str], moving: MovingSlots) -> list[Any]:
    """The asyncio twin of ``read_many`` (a ``redis.asyncio.cluster.RedisCluster``)."""
    await client.initialize()  # at once once done; the slot map is read before any command
    pipeline, parts = _plan(client, redis_keys, moving)
    replies = await pipeline.execute(raise_on_error=False)
    values, again = _gather(redis_keys, parts, replies, moving)
    if again:
        pipeline = client.pipeline()
        for position in again:
            pipeline.execute_command("GET", redis_keys[position])
        for position, value in zip(again, await pipeline.execute(), strict=True):
            values[position] = value
    return values


__all__ = [
    "MOVING_SLOT_SECONDS",
    "ClusterRouting",
    "MovingSlots",
    "by_slot",
    "node_of",
    "read_many",
    "read_many_async",
]
