"""What the managers do, written once: each operation is a *plan*, a generator that decides
and yields the calls it needs, and the driver (sync or asyncio) performs them.

    def read(state, key, default):          # the plan: decisions only
        for tier in state.tiers:
            entry = yield Call(tier, "get_entry", (key,))
            ...

    # sync driver                            # asyncio driver
    reply = layer.get_entry(*step.args)      reply = await layer.get_entry(*step.args)
    step = plan.send(reply)                  step = plan.send(reply)

This is the sans-IO pattern of h11 and hyper-h2: the plans never block, sleep or await, so
``MultilayerCache`` and ``AsyncMultilayerCache`` run exactly the same decisions. A plan
receives the result of each step from ``send``; when a step fails, the driver throws the
exception into the plan at the ``yield``, where the plan decides (a failed read is a miss
in that layer, a failed write raises).

Steps (the loading ones are used by ``loading.py``):

* ``Call(tier, method, args)``: ``tier.layer.<method>(*args)`` (awaited for asyncio layers).
* ``Load(loader, argument, slot_wait)``: the user's loader, counted and timed, on a load
  slot when loads are limited; the reply is ``Loaded(value, seconds)``.
* ``Flight(key, plan, soft_timeout, hard_timeout, fallback)``: run ``plan`` once for every
  caller that asks for ``key`` while it runs (request coalescing); each gets its result or
  its exception, or ``TimedOut`` if it stopped waiting for another caller's run.
* ``FlightMany(keys, plan_for, hard_timeout)``: the same per key, for a batch: the caller
  runs ``plan_for(keys nobody is loading yet)`` and waits for the others' loads of the
  rest. A key has one flight, whether a ``Flight`` or a ``FlightMany`` started it.
* ``Offer(key, entry)``: inside a flight, a stale entry its waiting callers may answer with.
* ``Watch(names)``, ``Wait(watcher, seconds)``, ``Unwatch(watcher)``, ``Announce(names)``:
  one load across the fleet (``fleetflight.py``): wait for another instance's backplane
  message naming a key, or tell the others a key has a value now.
* ``Refresh(job, items)``: queue background refreshes of ``(key, stale, frequency)`` items
  (at most one per key; see ``refresh.py``) together; the reply is ``None`` at once.
* ``Enqueue(tier, writes, block)``, ``Peek(tier, keys)``, ``Flush(tier)``: a write-behind
  layer's queue (``tier.queue``, see ``writequeue.py``): put encoded writes into it (waiting
  for room, or not), read the queued writes of some keys, wait until it is delivered. The
  driver makes these calls under the queue's lock and wakes its worker.

A write-behind layer is written by encoding the value at once (so a value it cannot take
raises in ``set()``) and queueing it; it is read by asking its queue first: a queued value
answers as the layer will once it is sent, a queued delete as a miss.

Layers that keep freshness (``tier.entries``: both of this package's layers) are read with
``get_entry`` and written with ``set_entry``, so that a value copied up into a faster layer
never outlives its freshness below, and stale values stay available to ``loading.py``.
Writes go slowest layer first: a value the shared layer cannot encode is then written
nowhere, and a faster layer never holds a value that the slower ones refused.

``value_type`` (the type values are read back as) goes to the layers that encode values
(``tier.typed``); in-process layers hold the objects themselves.
"""

from . import primitives
from .invalidation import drop_marked, invalidate, until_past
from .reads import (
    contains,
    direct_batch_tier,
    direct_tier,
    find_entries,
    find_entry,
    get_entries,
    get_entry,
    noted_generations,
    promote,
    promote_at_once,
    promote_found,
    promote_many_at_once,
    queued_entry,
    read,
    read_above,
    read_many,
    remaining_ttl,
    settle_direct_many,
    settle_direct_read,
)
from .steps import (
    READ_METHODS,
    Announce,
    Call,
    Enqueue,
    Flight,
    FlightMany,
    Flush,
    Load,
    Loaded,
    Offer,
    Peek,
    Plan,
    Refresh,
    Step,
    T,
    TimedOut,
    Unwatch,
    Wait,
    Watch,
    typed,
)
from .writes import (
    clear,
    delete,
    delete_many,
    enqueue_deletes,
    enqueue_writes,
    forget,
    store,
    write,
    write_at_once,
    write_loaded,
    write_loaded_at_once,
)

__all__ = [
    "READ_METHODS", "Call", "Enqueue", "Flight", "FlightMany", "Flush", "Load", "Loaded",
    "Offer", "Peek", "Plan", "Refresh", "Step", "T", "TimedOut", "clear", "contains",
    "delete", "delete_many", "direct_tier", "enqueue_deletes", "enqueue_writes",
    "find_entries", "find_entry", "forget", "get_entries", "get_entry", "promote",
    "promote_at_once", "promote_found", "queued_entry", "read", "read_many", "remaining_ttl",
    "settle_direct_read", "store", "typed", "write", "write_at_once", "write_loaded",
    "write_loaded_at_once", "primitives", "drop_marked", "invalidate", "until_past", "Announce",
    "Unwatch", "Wait", "Watch", "direct_batch_tier", "noted_generations", "promote_many_at_once",
    "read_above", "settle_direct_many",
]  # fmt: skip
