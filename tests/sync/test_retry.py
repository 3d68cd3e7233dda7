"""``multilayercache.sync.retry`` under real threads and real (short) sleeps: the load gate
never lets more than its maximum through, times out with a clear error, and loses no slot.
(Retries are ``core.backoff.RetryState``'s, tested in tests/core/test_backoff.py.)"""

from __future__ import annotations

import contextvars
import doctest
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from multilayercache.core.backoff import RetryPolicy
from multilayercache.sync import retry as retry_module
from multilayercache.sync.retry import LoadGate, LoadGateTimeout

FAST = RetryPolicy(attempts=3, base=0.001, cap=0.005, budget=1.0)


def run_threads(count: int, work) -> None:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            work()
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not errors, errors


def test_the_docstring_examples_run() -> None:
    assert doctest.testmod(retry_module).failed == 0


# ------------------------------------------------------------------ the load gate
def test_16_threads_through_a_gate_of_4_never_exceed_4() -> None:
    gate = LoadGate(4, timeout=5.0)
    lock = threading.Lock()
    inside = peak = 0

    def load() -> None:
        nonlocal inside, peak
        for _ in range(3):
            with gate:
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                    assert gate.in_flight <= 4
                time.sleep(0.005)
                with lock:
                    inside -= 1

    run_threads(16, load)
    assert peak <= 4 and gate.limit.peak <= 4
    assert peak >= 2  # the threads did overlap (4 almost always; a busy machine may lag)
    assert gate.in_flight == 0 and gate.waiting == 0 and gate.limit.entered == 48


def test_a_timeout_raises_a_clear_error() -> None:
    gate = LoadGate(1)
    gate.acquire()
    started = time.monotonic()
    with pytest.raises(LoadGateTimeout, match=r"within 0.05 s \(1 of 1 loads in flight\)"):
        gate.acquire(timeout=0.05)
    assert 0.04 <= time.monotonic() - started < 2.0
    assert gate.timeouts == 1 and gate.waiting == 0
    gate.release()
    gate.acquire(timeout=0)  # free again: no wait needed
    gate.release()


def test_a_timeout_of_zero_fails_at_once_when_full() -> None:
    gate = LoadGate(1)
    with gate.slot():
        started = time.monotonic()
        with pytest.raises(LoadGateTimeout, match="at once"):
            gate.acquire(timeout=0)
        assert time.monotonic() - started < 0.5


def test_the_gates_own_timeout_applies_to_with() -> None:
    gate = LoadGate(1, timeout=0.02)
    errors = []
    with gate:

        def other() -> None:
            try:
                with gate:
                    pass
            except LoadGateTimeout as error:
                errors.append(error)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=5)
    assert len(errors) == 1 and gate.in_flight == 0


def test_a_waiter_gets_the_slot_as_soon_as_it_is_released() -> None:
    gate = LoadGate(1)
    gate.acquire()
    got_it = threading.Event()

    def waiter() -> None:
        with gate.slot(timeout=math.inf):
            got_it.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.02)
    assert not got_it.is_set() and gate.waiting == 1
    released = time.monotonic()
    gate.release()
    assert got_it.wait(timeout=2)
    assert time.monotonic() - released < 1.0
    thread.join(timeout=5)
    assert gate.in_flight == 0


def test_an_error_inside_the_block_gives_the_slot_back() -> None:
    gate = LoadGate(2)
    with pytest.raises(KeyError):
        with gate.slot(timeout=1):
            raise KeyError("loader failed")
    assert gate.in_flight == 0


def test_a_slot_nested_in_a_slot_of_the_same_gate_runs_on_it() -> None:
    gate = LoadGate(1, timeout=0.05)
    with gate.slot():
        with gate.slot():  # a load inside a load: no second slot, no wait
            assert gate.in_flight == 1
        with ThreadPoolExecutor(1) as pool:  # a thread in a copy of the context
            copied = pool.submit(contextvars.copy_context().run, _nested_in, gate).result()
            assert copied == 1
            with pytest.raises(LoadGateTimeout):  # a thread without: an independent load
                pool.submit(_nested_in, gate).result()
    assert gate.in_flight == 0 and gate.limit.entered == 1


def _nested_in(gate: LoadGate) -> int:
    with gate.slot():
        return gate.in_flight


def test_a_thread_that_outlives_the_block_takes_a_slot_of_its_own() -> None:
    gate = LoadGate(1, timeout=0.05)
    with gate.slot():
        context = contextvars.copy_context()
    assert context.run(_nested_in, gate) == 1
    assert gate.limit.entered == 2 and gate.in_flight == 0


def test_a_leader_waiting_for_a_slot_goes_on_with_a_lent_one() -> None:
    from multilayercache.core.nesting import Lead, held_slot, leading

    gate = LoadGate(1, timeout=5)
    lead = Lead(None)

    def leader() -> int:
        leading.set(lead)
        return _nested_in(gate)

    with gate.slot(), ThreadPoolExecutor(1) as pool:
        future = pool.submit(leader)
        deadline = time.monotonic() + 5
        while gate.waiting == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert gate.waiting == 1 and not future.done()
        hold = held_slot.get()
        assert gate.lend(hold, lead)  # this holder now waits for the leader's flight
        assert future.result(1) == 1  # on the lent slot: none taken
        gate.take_back(hold, lead)
    assert gate.lent == 1 and gate.in_flight == 0 and gate.limit.entered == 1


def test_releasing_an_unheld_gate_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        LoadGate(1).release()


def test_a_gate_of_zero_is_refused() -> None:
    with pytest.raises(ValueError):
        LoadGate(0)
