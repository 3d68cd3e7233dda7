"""Key generations (``core/generations.py``): the table's own guarantees, and the property
they exist for, checked on the real plans: whatever the interleaving of a reader (``get``,
``get_many``, ``get_or_load``, ``get_or_load_many``) with a writer (``set``, ``set_many``,
``delete``, ``delete_many``, ``clear``) of the same key, no faster layer ends up holding a
value older than a slower one does (or, after a delete, one the slower ones no longer
hold).

Hypothesis picks the interleaving step by step: a plan's step (one layer call, or the
loader) is performed, then the plan runs on to its next step, and between any two of these
the other plan may move. The layers are real ``InMemoryLayer`` instances (the slower ones
stand for L2: a plan treats every layer alike). ``get_many`` below an in-process L1 runs
without a plan (``read_many_at_once``): the writer then moves before and after each of
its plain calls."""

from __future__ import annotations

import sys
import threading
import time
from contextlib import nullcontext
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multilayercache import InMemoryLayer, LayerPolicy
from multilayercache.core import loading, plans
from multilayercache.core.generations import KeyGenerations
from multilayercache.core.plans import Flight, FlightMany, Load, Loaded, Refresh
from multilayercache.core.state import CacheState
from multilayercache.layers.memory._layer_py import InMemoryLayer as PureInMemoryLayer
from multilayercache.sync.driver import Driver

OLD, NEW = 1, 2
"""Versions: what the slowest layer holds at first, and what the writer's change makes
current (the value it sets, or the row's state after the delete, which a load then
reads)."""


# ---------------------------------------------------------------------------- the table
def test_a_bump_changes_the_key_and_leaves_other_slots_alone() -> None:
    generations = KeyGenerations(slots=1024)
    seen: dict[Any, int] = {}
    generations.note(["a", "b"], seen)
    generations.bump("a")
    assert generations.changed(seen) == ["a"]
    generations.bump_all()
    assert sorted(generations.changed(seen)) == ["a", "b"]


def test_keys_of_one_slot_share_a_generation() -> None:
    generations = KeyGenerations(slots=1)  # every key in one slot: a copy only skips more
    seen = {"a": generations.of("a")}
    generations.bump("b")
    assert generations.changed(seen) == ["a"]


def test_slots_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        KeyGenerations(slots=1000)


def test_a_noted_generation_never_comes_back_under_concurrent_bumps() -> None:
    """Bumps store fresh tickets: however writers interleave, once a reader saw the key
    change it never sees the generation it noted again (an ``+= 1`` could lose updates
    and land back on it)."""
    generations = KeyGenerations(slots=8)
    stop = threading.Event()
    reverted: list[int] = []
    checks = 0
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # threads take turns every few bytecodes

    def bump() -> None:
        while not stop.is_set():
            generations.bump("k")

    writers = [threading.Thread(target=bump) for _ in range(3)]
    for writer in writers:
        writer.start()
    try:
        deadline = time.monotonic() + 20  # a bound for a machine that is very busy
        while checks < 2_000 and time.monotonic() < deadline:
            seen = {"k": generations.of("k")}
            while not generations.changed(seen):
                pass
            for _ in range(20):
                checks += 1
                if not generations.changed(seen):
                    reverted.append(seen["k"])
    finally:
        stop.set()
        for writer in writers:
            writer.join()
        sys.setswitchinterval(interval)
    assert checks >= 2_000 and reverted == []


# ---------------------------------------------------------------------------- interleavings
class Stepper:
    """Runs one plan a move at a time: ``advance`` either performs the pending step or
    resumes the plan up to its next one. Flights run inline (one caller)."""

    def __init__(self, plan: Any) -> None:
        self.stack = [plan]
        self.step: Any = None
        self.reply: Any = None
        self.done = False

    def advance(self) -> None:
        if self.step is not None:
            step, self.step = self.step, None
            self.reply = perform(step)
            return
        try:
            step = self.stack[-1].send(self.reply)
        except StopIteration as stop:
            self.stack.pop()
            self.reply = stop.value
            self.done = not self.stack
            return
        self.reply = None
        if type(step) is Flight:
            self.stack.append(step.plan)
        elif type(step) is FlightMany:
            self.stack.append(step.plan_for(step.keys))
        else:
            self.step = step


def perform(step: Any) -> Any:
    if type(step) is Load:
        return Loaded(step.loader(step.argument), 0.0)
    if type(step) is Refresh:
        return None
    return getattr(step.tier.layer, step.method)(*step.args)


READERS = ["get", "get_many", "get_or_load", "get_or_load_many"]
WRITERS = ["set", "set_many", "delete", "delete_many", "clear"]


@settings(max_examples=400, deadline=None)
@given(
    layers=st.sampled_from([2, 3]),
    reader=st.sampled_from(READERS),
    writer=st.sampled_from(WRITERS),
    held_below=st.booleans(),
    turns=st.lists(st.booleans(), max_size=80),
)
def test_no_interleaving_leaves_a_faster_layer_older(
    layers: int, reader: str, writer: str, held_below: bool, turns: list[bool]
) -> None:
    stack = [InMemoryLayer(max_size=100, name=f"l{depth}") for depth in range(layers)]
    policies = [LayerPolicy(promote="always", breaker=None, retry=None) for _ in stack]
    state = CacheState(stack, policies, record_latency=False, allow_async=False, lock=nullcontext())
    key = "k"
    if held_below:
        stack[-1].set(key, OLD)  # only the slowest layer holds it: a read copies it up
    database = {"version": OLD}

    def load(_: Any) -> int:
        return database["version"]

    def load_many(keys: list[Any]) -> dict[Any, int]:
        return {each: database["version"] for each in keys}

    read_plan = {
        "get": lambda: plans.read(state, key, None, 1),
        "get_many": lambda: plans.read_many(state, [key]),
        "get_or_load": lambda: loading.load(state, key, load, None, start=1),
        "get_or_load_many": lambda: loading.load_many(state, [key], load_many, None, 1),
    }[reader]()

    both = [Stepper(read_plan), Stepper(write_plan(state, writer, key, database))]
    for turn in turns:
        if not both[turn].done:
            both[turn].advance()
    for stepper in both:
        while not stepper.done:
            stepper.advance()
    assert_no_faster_layer_older(stack, writer, key, turns)


def write_plan(state: CacheState, writer: str, key: str, database: dict[str, int]) -> Any:
    database["version"] = NEW  # the source of truth changes, then the cache is told
    if writer == "set":
        yield from plans.write(state, {key: NEW}, None)
    elif writer == "set_many":
        yield from plans.write(state, {key: NEW, "other": NEW}, None)
    elif writer == "delete":
        yield from plans.delete(state, key)
    elif writer == "delete_many":
        yield from plans.delete_many(state, [key, "other"])
    else:
        yield from plans.clear(state)


def assert_no_faster_layer_older(stack: list[Any], writer: str, key: str, moves: Any) -> None:
    deleted = writer in ("delete", "delete_many", "clear")
    # A layer without the key claims nothing after a set (a miss); after a delete, its
    # absence is the newest state, which no faster layer may contradict with OLD.
    absent = NEW if deleted else float("-inf")
    held = [layer.get(key, None) for layer in stack]
    for depth, value in enumerate(held):
        if value is None:
            continue
        for slower in held[depth + 1 :]:
            assert value >= (absent if slower is None else slower), (held, moves)


class Hooked(PureInMemoryLayer):
    """An L1 (or, with ``get_fresh``, the layer below it) that lets the writer move at the
    start and at the end of each call the batch read without a plan makes into it."""

    def __init__(self, hook: Any, **options: Any) -> None:
        super().__init__(**options)
        self.hook = hook

    def get_entries(self, keys: Any) -> Any:
        self.hook()
        found = super().get_entries(keys)
        self.hook()
        return found

    def set_many_entries(self, mapping: Any, lifetime: Any, load_seconds: float = 0.0) -> None:
        self.hook()
        super().set_many_entries(mapping, lifetime, load_seconds)
        self.hook()

    def delete(self, key: Any) -> bool:
        self.hook()
        deleted = super().delete(key)
        self.hook()
        return deleted

    def get_fresh(self, keys: Any, entries: Any = None) -> Any:
        self.hook()
        found = PureInMemoryLayer.get_entries(self, keys)
        self.hook()
        fresh = {key: entry for key, entry in found.items() if entry.fresh_for > 0}
        if entries is not None:
            entries.update(fresh)
        return {key: entry.value for key, entry in fresh.items()}


@settings(max_examples=400, deadline=None)
@given(
    writer=st.sampled_from(WRITERS),
    held_below=st.booleans(),
    first=st.integers(0, 8),
    steps=st.integers(0, 8),
    later=st.lists(st.integers(0, 3), max_size=8),
)
def test_no_interleaving_with_a_batch_read_without_a_plan_leaves_l1_older(
    writer: str, held_below: bool, first: int, steps: int, later: list[int]
) -> None:
    # ``get_many`` below an in-process L1 without a plan (``read_many_at_once``) makes plain
    # calls: the writer may move (some steps of its plan) before and after each; it first
    # moves at the ``first`` of these chances.
    key, database = "k", {"version": OLD}
    moves = [0] * first + [steps, *later]
    writing: list[Stepper] = []

    def hook() -> None:
        if not writing or not moves:
            return
        stepper = writing.pop()  # not re-entered by the writer's own calls
        for _ in range(moves.pop(0)):
            if not stepper.done:
                stepper.advance()
        writing.append(stepper)

    stack = [Hooked(hook, max_size=100, name="l1"), Hooked(hook, max_size=100, name="l2")]
    policies = [LayerPolicy(promote="always", breaker=None, retry=None) for _ in stack]
    state = CacheState(stack, policies, record_latency=False, allow_async=False, lock=nullcontext())
    state.invalidations.loaded = True  # no layer keeps tag marks: none to load
    tier = plans.direct_batch_tier(state)
    assert tier is not None
    if held_below:
        PureInMemoryLayer.set(stack[1], key, OLD)
    writing.append(Stepper(write_plan(state, writer, key, database)))
    found = Driver(state).read_many_at_once(tier, [key, "other"])
    assert found.get(key, OLD) in (OLD, NEW)
    stepper = writing.pop()
    while not stepper.done:
        stepper.advance()
    assert_no_faster_layer_older(stack, writer, key, moves)
