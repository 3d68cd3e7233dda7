"""Hash flooding of the L1: keys chosen to share one hash, against keys with distinct hashes.

    python benchmarks/hash_flood.py [--flood 5000] [--calls 20000] [--repeat 7]

Evictions: a layer of 1,000 entries holds 1,000 hot keys (each read three times, set on a
miss); then ``--flood`` one-off keys are each read (a miss) and set, as a service does with
the user ids of requests. Printed: how many hot keys are no longer held, for one-off keys
that share one hash (ints ``k + i * (2**61 - 1)``, and strings in a type whose
``__hash__`` returns a constant) and for the control (distinct hashes), in both twins.

Costs: on that flooded layer, ns per call of ``get`` hitting a held key of the flooded hash
(an equal int, not the stored object, so that keys are compared), ``get`` missing on it (a
new key of that hash), and ``set`` of a new key of that hash; each beside the same call on
keys with distinct hashes that cost as much to hash and compare (big ints; ``str``s with a
``__hash__`` of their own), measured back to back in each round. Printed: the medians over
``--repeat`` rounds, and the median of the per-round ratios, which is what counts (the
machine's swings cancel within a round).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

from multilayercache.layers.memory import _layer_py, layer

MODULUS = 2**61 - 1  # hash(n) == n % MODULUS for ints (64-bit CPython)
SIZE = HOT = 1_000
BIG = 2**62  # keys from here on hash like the flooded ones are compared: by __eq__


class ConstantHash(str):
    """A string key whose type hashes every instance alike (what a careless or hostile
    ``__hash__`` does to strings, whose own hashes Python salts)."""

    __slots__ = ()

    def __hash__(self) -> int:
        return 42


class OwnHash(str):
    """A string key whose type hashes as ``str`` does, through a ``__hash__`` of its own:
    the control for ``ConstantHash`` (the same cost per hash)."""

    __slots__ = ()

    def __hash__(self) -> int:
        return str.__hash__(self)


# Per kind of key: the n-th one-off key of a flood, and the n-th key with a distinct hash
# that costs as much to hash and compare (the control).
KINDS: dict[str, tuple[Callable[[int], Any], Callable[[int], Any]]] = {
    "ints": (lambda n: 7 + (n + 1) * MODULUS, lambda n: BIG + n),
    "strs": (lambda n: ConstantHash(f"user:{n}"), lambda n: OwnHash(f"user:{n}")),
}


def evicted_hot_keys(layer_type: type, key: Callable[[int], Any], flood: int) -> int:
    """Hot keys no longer held after ``flood`` one-off keys (``key(n)``) were read and set."""
    l1 = layer_type(max_size=SIZE)
    hot = list(range(1, HOT + 1))
    for _ in range(3):
        for hot_key in hot:
            if l1.get(hot_key) is None:
                l1.set(hot_key, hot_key)
    for n in range(flood):
        if l1.get(key(n)) is None:
            l1.set(key(n), n)
    return sum(hot_key not in l1 for hot_key in hot)


def ns_per_call(call: Callable[[Any], Any], keys: list[Any]) -> float:
    start = time.perf_counter_ns()
    for key in keys:
        call(key)
    return (time.perf_counter_ns() - start) / len(keys)


def equal_copy(key: Any) -> Any:
    """An equal key that is not the same object (as a request builds its key afresh)."""
    return type(key)(str(key)) if isinstance(key, str) else int(str(key))


def costs(
    layer_type: type, kind: str, flood: int, calls: int, repeat: int
) -> dict[str, tuple[float, float, float]]:
    """``{call: (ns on the flooded hash, ns on distinct hashes, ratio)}``, medians of
    ``repeat`` rounds:
    on a layer that holds ``SIZE`` keys with distinct hashes and was flooded with ``flood``
    one-off keys of one hash."""
    flooded, normal = KINDS[kind]
    l1 = layer_type(max_size=SIZE + 10)
    residents = [normal(n) for n in range(SIZE)]
    for key in residents:
        l1.set(key, key)
        l1.get(key)  # (read once, so that the flood does not evict them)
    for n in range(flood):
        if l1.get(flooded(n)) is None:
            l1.set(flooded(n), n)
    held = [flooded(n) for n in range(flood) if flooded(n) in l1]
    hits = {
        "flooded": [equal_copy(held[n % len(held)]) for n in range(calls)],
        "normal": [equal_copy(residents[n % SIZE]) for n in range(calls)],
    }
    misses = {
        "flooded": [flooded(flood + n) for n in range(calls)],
        "normal": [normal(10**7 + n) for n in range(calls)],
    }
    rounds: dict[str, list[float]] = {}
    for round_ in range(repeat):
        for which, make in (("flooded", flooded), ("normal", normal)):
            rounds.setdefault(f"get hit {which}", []).append(ns_per_call(l1.get, hits[which]))
            rounds.setdefault(f"get miss {which}", []).append(ns_per_call(l1.get, misses[which]))
            # New keys each round (normal ones evict residents, flooded ones are turned
            # away); the evicted residents are put back, so every round starts alike.
            fresh = [make(10**8 + calls * round_ + n) for n in range(calls)]
            rounds.setdefault(f"set new {which}", []).append(
                ns_per_call(lambda key: l1.set(key, 0), fresh)
            )
            for key in residents:
                if key not in l1:
                    l1.set(key, key)
    # Ratios per round (flooded and normal ran back to back, so the machine's swings
    # cancel), then their median.
    return {
        name: (
            statistics.median(rounds[f"{name} flooded"]),
            statistics.median(rounds[f"{name} normal"]),
            statistics.median(
                flooded_ns / normal_ns
                for flooded_ns, normal_ns in zip(
                    rounds[f"{name} flooded"], rounds[f"{name} normal"], strict=True
                )
            ),
        )
        for name in ("get hit", "get miss", "set new")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=5_000)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    options = parser.parse_args()
    logging.getLogger("multilayercache").setLevel(logging.ERROR)  # the guard's warnings
    twins = {"compiled": layer.InMemoryLayer, "pure": _layer_py.InMemoryLayer}
    print(f"Hot keys evicted (of {HOT}) by {options.flood} one-off keys, layer of {SIZE}:")
    for kind, (flooded, normal) in KINDS.items():
        for label, key in (
            (f"{kind} sharing one hash", flooded),
            (f"{kind}, distinct hashes", normal),
        ):
            counts = [evicted_hot_keys(twin, key, options.flood) for twin in twins.values()]
            row = "  ".join(f"{name} {count:4d}" for name, count in zip(twins, counts, strict=True))
            print(f"  {label:<24} {row}")
    print(f"\nns per call on a layer flooded with {options.flood} keys of one hash "
          f"(medians of {options.repeat} rounds of {options.calls}):")  # fmt: skip
    for kind in KINDS:
        for name, twin in twins.items():
            for call, (flooded_ns, normal_ns, ratio) in costs(
                twin, kind, options.flood, options.calls, options.repeat
            ).items():
                print(
                    f"  {kind} {name:<8} {call:<8}  flooded hash {flooded_ns:7.0f}  "
                    f"distinct hashes {normal_ns:7.0f}  ratio {ratio:5.2f}"
                )


if __name__ == "__main__":
    main()
