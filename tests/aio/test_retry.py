"""``multilayercache.aio.retry`` under real asyncio tasks and real (short) sleeps: the load
gate never lets more than its maximum through, serves waiters in order, times out with a
clear error and loses no slot to a timeout or a cancellation. And the twins have the same
public names and parameters."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import math
import time

import pytest

from multilayercache.aio import retry as aio_retry
from multilayercache.aio.retry import LoadGate, LoadGateTimeout
from multilayercache.core.backoff import RetryPolicy
from multilayercache.sync import retry as sync_retry

FAST = RetryPolicy(attempts=3, base=0.001, cap=0.005, budget=1.0)


async def settle() -> None:
    """Let every ready task run."""
    for _ in range(5):
        await asyncio.sleep(0)


# ------------------------------------------------------------------ the twins
def public_names(module) -> list[str]:
    return sorted(module.__all__)


def test_the_twins_have_the_same_names_and_parameters() -> None:
    assert public_names(aio_retry) == public_names(sync_retry)
    assert aio_retry.LoadGateTimeout is sync_retry.LoadGateTimeout
    pairs = []
    for name in ("__init__", "acquire", "release", "slot", "lend", "take_back"):
        pairs.append((getattr(aio_retry.LoadGate, name), getattr(sync_retry.LoadGate, name)))
    for aio_function, sync_function in pairs:
        aio_parameters = list(inspect.signature(aio_function).parameters.values())
        sync_parameters = list(inspect.signature(sync_function).parameters.values())
        shape = [(p.name, p.kind, p.default) for p in aio_parameters]
        assert shape == [(p.name, p.kind, p.default) for p in sync_parameters], aio_function
    public = {name for name in dir(sync_retry.LoadGate(1)) if not name.startswith("_")}
    assert public == {name for name in dir(aio_retry.LoadGate(1)) if not name.startswith("_")}


# ------------------------------------------------------------------ the load gate
async def test_16_tasks_through_a_gate_of_4_never_exceed_4() -> None:
    gate = LoadGate(4, timeout=5.0)
    inside = peak = 0

    async def load() -> None:
        nonlocal inside, peak
        for _ in range(3):
            async with gate:
                inside += 1
                peak = max(peak, inside)
                assert gate.in_flight <= 4
                await asyncio.sleep(0.002)
                inside -= 1

    await asyncio.gather(*[load() for _ in range(16)])
    assert peak == 4 and gate.limit.peak == 4
    assert gate.in_flight == 0 and gate.waiting == 0 and gate.limit.entered <= 48


async def test_waiters_are_served_first_come_first_served() -> None:
    gate = LoadGate(1)
    await gate.acquire()
    order: list[int] = []

    async def waiter(number: int) -> None:
        async with gate.slot(timeout=math.inf):
            order.append(number)
            await asyncio.sleep(0)

    tasks = []
    for number in range(5):
        tasks.append(asyncio.create_task(waiter(number)))
        await settle()  # each is queued before the next arrives
    assert gate.waiting == 5
    gate.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert gate.in_flight == 0


async def test_a_newcomer_does_not_jump_the_queue() -> None:
    gate = LoadGate(1)
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await settle()
    gate.release()  # handed to the waiter, even before it runs
    with pytest.raises(LoadGateTimeout):
        await gate.acquire(timeout=0)
    await waiter
    assert gate.in_flight == 1
    gate.release()


async def test_a_timeout_raises_a_clear_error() -> None:
    gate = LoadGate(1)
    await gate.acquire()
    started = time.monotonic()
    with pytest.raises(LoadGateTimeout, match=r"within 0.05 s \(1 of 1 loads in flight\)"):
        await gate.acquire(timeout=0.05)
    assert 0.04 <= time.monotonic() - started < 2.0
    assert gate.timeouts == 1 and gate.waiting == 0
    with pytest.raises(LoadGateTimeout, match="at once"):
        await gate.acquire(timeout=0)
    gate.release()
    await gate.acquire(timeout=0)  # free again: no wait needed
    gate.release()


async def test_the_gates_own_timeout_applies_to_async_with() -> None:
    gate = LoadGate(1, timeout=0.02)
    async with gate:
        with pytest.raises(LoadGateTimeout):
            async with gate:
                pass
    assert gate.in_flight == 0


async def test_a_cancelled_waiter_loses_no_slot() -> None:
    gate = LoadGate(1)
    await gate.acquire()
    waiter = asyncio.create_task(gate.acquire())
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert gate.waiting == 0
    gate.release()
    assert gate.in_flight == 0
    await gate.acquire(timeout=0)
    gate.release()


async def test_a_waiter_cancelled_as_it_is_handed_the_slot_passes_it_on() -> None:
    gate = LoadGate(1)
    await gate.acquire()
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await settle()
    gate.release()  # hands the slot to `first`...
    first.cancel()  # ...which is cancelled before it can run
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, timeout=2)  # `second` got the slot instead
    assert gate.in_flight == 1 and gate.waiting == 0
    gate.release()
    assert gate.in_flight == 0


async def test_a_waiter_timing_out_as_it_is_handed_the_slot_passes_it_on() -> None:
    gate = LoadGate(1)
    await gate.acquire()
    first = asyncio.create_task(gate.acquire(timeout=0.02))
    second = asyncio.create_task(gate.acquire(timeout=2))
    await settle()
    # Block the loop past both deadlines: when it runs again, the release (due first)
    # hands the slot to `first`, then `first`'s timeout fires before `first` can run.
    asyncio.get_running_loop().call_later(0.015, gate.release)
    time.sleep(0.03)
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(results[0], LoadGateTimeout) and results[1] is None
    assert gate.in_flight == 1 and gate.waiting == 0  # `second` holds it: none lost
    gate.release()
    assert gate.in_flight == 0


async def test_an_error_inside_the_block_gives_the_slot_back() -> None:
    gate = LoadGate(2)
    with pytest.raises(KeyError):
        async with gate.slot(timeout=1):
            raise KeyError("loader failed")
    assert gate.in_flight == 0


async def test_a_slot_nested_in_a_slot_of_the_same_gate_runs_on_it() -> None:
    gate = LoadGate(1, timeout=0.05)
    async with gate.slot():
        async with gate.slot():  # a load inside a load: no second slot, no wait
            assert gate.in_flight == 1

            async def nested_task() -> int:
                async with gate.slot():  # a task created inside copies the context
                    return gate.in_flight

            assert await asyncio.create_task(nested_task()) == 1
    assert gate.in_flight == 0 and gate.limit.entered == 1
    other = LoadGate(1, timeout=0.05)
    async with gate.slot():
        async with other.slot():  # another gate's slot is another limit
            assert other.in_flight == 1


async def test_a_task_that_outlives_the_block_takes_a_slot_of_its_own() -> None:
    gate = LoadGate(1, timeout=0.05)
    outer_done = asyncio.Event()

    async def later() -> None:
        await outer_done.wait()
        async with gate.slot():
            assert gate.in_flight == 1

    async with gate.slot():
        task = asyncio.create_task(later())
    outer_done.set()
    await task
    assert gate.limit.entered == 2 and gate.in_flight == 0


async def test_a_leader_waiting_for_a_slot_goes_on_with_a_lent_one() -> None:
    from multilayercache.core.nesting import Lead, held_slot, leading

    gate = LoadGate(1, timeout=5)
    lead = Lead(None)
    inside = asyncio.Event()

    async def leader() -> int:
        leading.set(lead)
        async with gate.slot():
            inside.set()
            return gate.in_flight

    async with gate.slot():
        task = asyncio.create_task(leader(), context=contextvars.Context())  # independent
        await settle()
        assert gate.waiting == 1 and not inside.is_set()
        hold = held_slot.get()
        assert gate.lend(hold, lead)  # this holder now waits for the leader's flight
        assert await asyncio.wait_for(task, 1) == 1  # on the lent slot: none taken
        gate.take_back(hold, lead)
    assert gate.lent == 1 and gate.in_flight == 0 and gate.waiting == 0
    assert gate.limit.entered == 1


async def test_releasing_an_unheld_gate_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        LoadGate(1).release()
