"""Shared fixtures: every behaviour test runs against both twins of the core."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from multilayercache import _core
from multilayercache._core import (
    _doorkeeper_py,
    _ghost_py,
    _hotkeys_py,
    _memory_py,
    _policy_py,
    _sketch_py,
    _timerwheel_py,
)

TRACES = Path(
    os.environ.get("MULTILAYERCACHE_TRACES", Path(__file__).parents[2] / "shared" / "traces")
)

PURE = SimpleNamespace(
    name="pure",
    CountMinSketch=_sketch_py.CountMinSketch,
    Doorkeeper=_doorkeeper_py.Doorkeeper,
    GhostTable=_ghost_py.GhostTable,
    HotKeyTable=_hotkeys_py.HotKeyTable,
    TimerWheel=_timerwheel_py.TimerWheel,
    WTinyLfuPolicy=_policy_py.WTinyLfuPolicy,
    InMemoryLayer=_memory_py.InMemoryLayer,
)


def compiled_twins() -> SimpleNamespace | None:
    try:
        from multilayercache._core import (
            doorkeeper,
            ghost,
            hotkeys,
            memory,
            policy,
            sketch,
            timerwheel,
        )
    except ImportError:
        return None
    return SimpleNamespace(
        name="compiled",
        CountMinSketch=sketch.CountMinSketch,
        Doorkeeper=doorkeeper.Doorkeeper,
        GhostTable=ghost.GhostTable,
        HotKeyTable=hotkeys.HotKeyTable,
        TimerWheel=timerwheel.TimerWheel,
        WTinyLfuPolicy=policy.WTinyLfuPolicy,
        InMemoryLayer=memory.InMemoryLayer,
    )


COMPILED = compiled_twins()
IMPLEMENTATIONS = [PURE] + ([COMPILED] if COMPILED else [])
requires_compiled = pytest.mark.skipif(COMPILED is None, reason="the extension is not built")


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda impl: impl.name)
def impl(request: pytest.FixtureRequest) -> SimpleNamespace:
    """The pure-Python twins, and the compiled ones when built."""
    return request.param


@pytest.fixture
def Layer(impl: SimpleNamespace) -> type:
    return impl.InMemoryLayer


class FakeClock:
    """An injectable monotonic clock (seconds) that tests move by hand."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def trace_path(name: str) -> Path:
    path = TRACES / f"{name}.npy"
    if not path.exists():
        pytest.skip(f"trace {path} not found (../shared/traces beside the checkout)")
    return path


__all__ = [
    "COMPILED",
    "FakeClock",
    "IMPLEMENTATIONS",
    "PURE",
    "_core",
    "requires_compiled",
    "trace_path",
]
