"""Bounded MessagePack decoding, measured: what hostile values cost a read now, and what the
check costs honest ones.

    python benchmarks/bounded_decoding.py [--repeat 7] [--unbounded]
    MULTILAYERCACHE_NO_EXTENSIONS=1 python benchmarks/bounded_decoding.py  # the pure twin

1. Hostile values (each in a fresh subprocess, so that ``ru_maxrss``, the peak RSS, is the
   read's own): ~10 MB of empty arrays, arrays nested 100,000 deep, a million small arrays
   (no header claims too much: the scanner walks them one by one), and the worst a value
   within the default bounds can cost (999,999 empty arrays, accepted). The time is the
   best of 3 reads; the RSS is how much the peak grew over the reads. ``--unbounded`` also
   runs msgspec alone on the first two (~750 MB and seconds: what a read cost before).
2. Honest values: ``MsgpackSerializer.loads`` of 100 B, 1 KB and 100 KB documents, with the
   check and without it (the same code minus the scanner), and ``loads_sequence`` of 100
   enveloped items of ~200 B (the Redis layers' batch read). Medians of ``--repeat``
   interleaved rounds: the ratios come from the same moments of a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import timeit
from collections.abc import Callable
from typing import Any

import msgspec

from multilayercache import MsgpackSerializer
from multilayercache.serializers import msgpack as msgpack_module

TAG = b"\x01"
HOSTILE = {
    "10 MB of empty arrays": 'b"\\xdd" + (10_000_000).to_bytes(4, "big") + b"\\x90" * 10_000_000',
    "nested 100,000 deep": 'b"\\x91" * 100_000 + b"\\x90"',
    "a million small arrays": 'b"\\xdc\\xff\\xff" + (b"\\x9f" + b"\\x90" * 15) * 65535',
    "999,999 empty arrays (accepted)": (
        'b"\\xdd" + (999_999).to_bytes(4, "big") + b"\\x90" * 999_999'
    ),
}
READ = """
import json, resource, time
import msgspec
from multilayercache import MsgpackSerializer, UntrustedDataError
data = b"\\x01" + {payload}
read = MsgpackSerializer().loads if {bounded} else msgspec.msgpack.Decoder().decode
if not {bounded}:
    data = data[1:]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
best, outcome = None, "accepted"
for _ in range(3):
    start = time.perf_counter()
    try:
        value = read(data)
    except (UntrustedDataError, RecursionError) as error:
        outcome = f"{{type(error).__name__}}: {{error}}"
    elapsed = time.perf_counter() - start  # the value is freed after: not counted
    value = None
    best = elapsed if best is None else min(best, elapsed)
grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
figures = {{"bytes": len(data), "grown_kb": grown_kb, "ms": best * 1e3, "outcome": outcome}}
print(json.dumps(figures))
"""

WORDS = "red blue green small large cotton steel wooden classic modern premium light".split()


def document(size: int, rng: random.Random) -> dict[str, Any]:
    """A catalogue page of about ``size`` bytes of MessagePack (the kind of data cached)."""
    items: list[dict[str, Any]] = []
    page = {"page": 1, "items": items}
    while len(msgspec.msgpack.encode(page)) < size:
        items.append(
            {
                "id": rng.randrange(10**6),
                "name": " ".join(rng.choices(WORDS, k=2)),
                "price": round(rng.uniform(1, 500), 2),
                "stock": rng.randrange(1000),
            }
        )
    return page


def unchecked(serializer: MsgpackSerializer) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``loads`` and ``loads_sequence`` as they were before the check: the same code, minus
    the scanner (as closures: ~50 ns faster than the methods were, so the cost shown is a
    little more than the real one)."""
    decode = msgspec.msgpack.Decoder().decode

    def loads(data: bytes) -> Any:
        if data[:1] != TAG:
            raise ValueError("not MessagePack data written by multilayercache")
        try:
            return decode(memoryview(data)[1:])
        except msgspec.DecodeError as error:
            raise ValueError(error) from None

    def loads_sequence(items: list[bytes], objects_per_item: int) -> list[Any] | None:
        total = objects_per_item * len(items)
        joined = b"\xdd" + total.to_bytes(4, "big") + b"".join(items)
        try:
            decoded = decode(joined)
        except msgspec.DecodeError:
            return None
        return decoded if len(decoded) == total else None

    return loads, loads_sequence


def per_call_us(action: Callable[[], Any], seconds: float = 0.02) -> float:
    """The best of 5 batches of about ``seconds`` each: the least disturbed by the other
    processes of a shared machine."""
    calls = max(1, int(seconds / (timeit.timeit(action, number=3) / 3)))
    return min(timeit.repeat(action, number=calls, repeat=5)) / calls * 1e6


def hostile(unbounded: bool) -> None:
    print("hostile values: one read (best of 3), peak RSS growth over the reads")
    print(f"  {'value':34} {'reader':9} {'bytes':>10} {'RSS +':>10} {'ms':>9}  outcome")
    for name, payload in HOSTILE.items():
        readers = [True] + ([False] if unbounded and "accepted" not in name else [])
        if "small" in name:
            readers = [True]
        for bounded in readers:
            out = subprocess.run(
                [sys.executable, "-c", READ.format(payload=payload, bounded=bounded)],
                capture_output=True,
                text=True,
                check=True,
            )
            figures = json.loads(out.stdout)
            print(
                f"  {name:34} {'bounded' if bounded else 'msgspec':9} {figures['bytes']:>10,} "
                f"{figures['grown_kb'] / 1024:>7.1f} MB {figures['ms']:>9.3f}  "
                f"{figures['outcome'][:70]}"
            )


def honest(repeat: int) -> None:
    rng = random.Random(7)
    serializer = MsgpackSerializer()
    plain_loads, plain_sequence = unchecked(serializer)
    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    for size in (100, 1_000, 100_000):
        data = serializer.dumps(document(size, rng))
        assert serializer.loads(data) == plain_loads(data)
        cases[f"loads, {len(data):,} B"] = (
            lambda data=data: serializer.loads(data),
            lambda data=data: plain_loads(data),
        )
    header = msgspec.msgpack.encode([1, 1_700_000_000_000, 2**62, 2**62, 2**62, 0.001, []])
    items = [header + serializer.dumps(document(150, rng)) for _ in range(100)]
    assert serializer.loads_sequence(items, 3) == plain_sequence(items, 3)
    cases[f"loads_sequence, 100 x {len(items[0])} B"] = (
        lambda: serializer.loads_sequence(items, 3),
        lambda: plain_sequence(items, 3),
    )
    rounds: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, (checked, plain) in cases.items():
            rounds[name].append((per_call_us(checked), per_call_us(plain)))
    scanner = msgpack_module.count_objects.__module__.rsplit(".", 1)[-1]
    print(f"\nhonest values (scanner: {scanner}; medians of {repeat} interleaved rounds)")
    print(f"  {'read':32} {'checked us':>11} {'unchecked us':>13} {'cost':>8}")
    for name, pairs in rounds.items():
        checked_us = statistics.median(pair[0] for pair in pairs)
        plain_us = statistics.median(pair[1] for pair in pairs)
        ratio = statistics.median(pair[0] / pair[1] for pair in pairs)
        print(f"  {name:32} {checked_us:>11.2f} {plain_us:>13.2f} {ratio - 1:>+8.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="rounds (7)")
    parser.add_argument(
        "--unbounded", action="store_true", help="also run msgspec alone on the bombs (~750 MB)"
    )
    args = parser.parse_args(argv)
    if os.environ.get("MULTILAYERCACHE_NO_EXTENSIONS"):
        print("MULTILAYERCACHE_NO_EXTENSIONS is set: the pure-Python scanner\n")
    hostile(args.unbounded)
    honest(args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
