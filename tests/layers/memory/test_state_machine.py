"""InMemoryLayer against a plain model, with an injectable clock (Hypothesis state machine).

A cache may forget anything at any time (eviction, admission), so the model only says what
the cache must never do: return a value other than the latest one written, return an expired
value, exceed its bound, or resurrect a deleted key.
"""

from __future__ import annotations

import math

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from invariants import check_invariants
from support import IMPLEMENTATIONS, FakeClock

MISS = object()
keys = st.integers(0, 40)
ttls = st.sampled_from([None, 0, 0.25, 1, 2.5, 10, math.inf])


class LayerModel(RuleBasedStateMachine):
    implementation = IMPLEMENTATIONS[0]
    weighted = False

    @initialize(bound=st.integers(1, 25), default_ttl=st.sampled_from([None, 1, 5]))
    def create(self, bound, default_ttl) -> None:
        self.clock = FakeClock()
        self.bound = bound
        self.default_ttl = math.inf if default_ttl is None else default_ttl
        if self.weighted:
            self.cache = self.implementation.InMemoryLayer(
                max_weight=bound * 3,
                weigher=lambda key, value: key % 5,
                ttl=default_ttl,
                clock=self.clock,
            )
        else:
            self.cache = self.implementation.InMemoryLayer(
                max_size=bound, ttl=default_ttl, clock=self.clock
            )
        self.model: dict[int, tuple[object, float]] = {}  # key -> (value, expiry time)
        self.writes = 0

    def _live(self, key: int) -> bool:
        return key in self.model and self.model[key][1] > self.clock.now

    @rule(key=keys, ttl=ttls)
    def set(self, key, ttl) -> None:
        self.writes += 1
        value = (key, self.writes)
        self.cache.set(key, value, ttl=ttl)
        seconds = self.default_ttl if ttl is None else ttl
        if seconds == 0:
            self.model.pop(key, None)
        else:
            self.model[key] = (value, self.clock.now + seconds)

    @rule(key=keys)
    def get(self, key) -> None:
        result = self.cache.get(key, MISS)
        if result is not MISS:
            assert self._live(key), f"returned {result!r} for a key that is absent or expired"
            assert result == self.model[key][0], "returned a value other than the latest write"

    @rule(key=keys)
    def delete(self, key) -> None:
        removed = self.cache.delete(key)
        assert not removed or self._live(key), "deleted an entry that should not exist"
        self.model.pop(key, None)

    @rule(key=keys, ttl=ttls)
    def adjust_ttl(self, key, ttl) -> None:
        changed = self.cache.adjust_ttl(key, ttl)
        assert not changed or self._live(key)
        if changed:
            seconds = self.default_ttl if ttl is None else ttl
            if seconds == 0:
                self.model.pop(key)
            else:
                self.model[key] = (self.model[key][0], self.clock.now + seconds)

    @rule(residue=st.integers(0, 4))
    def drop_later(self, residue) -> None:
        # Invalidated, swept lazily: never read again, whatever operations come next.
        invalid = {key for key in range(41) if key % 5 == residue}
        self.cache.drop_later([invalid])
        for key in invalid:
            self.model.pop(key, None)

    @rule(seconds=st.sampled_from([0.1, 0.25, 1, 2.5, 60]))
    def wait(self, seconds) -> None:
        self.clock.advance(seconds)

    @invariant()
    def bounded_and_consistent(self) -> None:
        if not hasattr(self, "cache"):
            return
        stats = self.cache.stats()
        if self.weighted:
            assert stats.weight <= self.bound * 3
        else:
            assert len(self.cache) <= self.bound
        for key in range(41):
            if key in self.cache:
                assert self._live(key), f"{key} is reported present but absent or expired"
        check_invariants(self.cache)


for _impl in IMPLEMENTATIONS:
    for _weighted in (False, True):
        _name = f"Test{_impl.name.title()}{'Weighted' if _weighted else 'Sized'}Layer"
        _machine = type(_name, (LayerModel,), {"implementation": _impl, "weighted": _weighted})
        _machine.TestCase.settings = settings(
            max_examples=60, stateful_step_count=60, deadline=None
        )
        globals()[_name] = _machine.TestCase
