"""What per-layer encryption (AES-GCM, the key as associated data) costs, measured: a read and
a write of 100 B, 1 KB and 100 KB values, with and without it; and an L1 hit of a cache whose
L2 encrypts, against one whose L2 does not (the hit never touches L2: it must not change).

    python benchmarks/encryption.py [--repeat 7]

Reads and writes go to a local Valkey (loopback) through ``RedisLayer.get`` / ``set``, and,
to show the cipher's own share without the network's noise, through the layer's encoding
alone (``encode_write``, and the decode of the bytes a ``get`` receives). Medians of
``--repeat`` rounds of interleaved variants, so that the ratios come from the same moments
of this noisy machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer
from multilayercache.serializers.encrypted import Encryption
from multilayercache.tools.servers import RedisServer


def timed(action: Any, calls: int) -> float:
    """Microseconds per call of ``action``."""
    start = time.perf_counter()
    for _ in range(calls):
        action()
    return (time.perf_counter() - start) / calls * 1e6


def median_ratio(rounds: dict[str, list[float]]) -> tuple[float, float, float]:
    plain, sealed = statistics.median(rounds["plain"]), statistics.median(rounds["encrypted"])
    return plain, sealed, sealed / plain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="rounds (7)")
    args = parser.parse_args(argv)
    encryption = Encryption({"k1": os.urandom(32)})
    with RedisServer.start(use_env=False) as server:
        layers = {
            "plain": RedisLayer(server.url, prefix="plain:"),
            "encrypted": RedisLayer(server.url, prefix="sealed:", encryption=encryption),
        }
        print(f"{'value':>7} {'operation':>16} {'plain us':>9} {'encrypted us':>13} {'ratio':>6}")
        for size in (100, 1_000, 100_000):
            value = "x" * size
            calls = max(200, 4_000_000 // (size + 2_000))
            rounds: dict[str, dict[str, list[float]]] = {}
            for _ in range(args.repeat):
                for name, layer in layers.items():
                    layer.set("v", value)
                    stored = layer.client.get(layer.redis_key("v"))
                    lifetime = layer.lifetime(None)
                    measured = {
                        "write (Redis)": timed(lambda layer=layer: layer.set("v", value), calls),
                        "read (Redis)": timed(lambda layer=layer: layer.get("v"), calls),
                        "encode only": timed(
                            lambda layer=layer, lifetime=lifetime: layer.encode_write(
                                "v", value, lifetime
                            ),
                            calls,
                        ),
                        "decode only": timed(
                            lambda layer=layer, stored=stored: layer._found("v", stored, None),
                            calls,
                        ),
                    }
                    for operation, micros in measured.items():
                        rounds.setdefault(operation, {}).setdefault(name, []).append(micros)
            label = f"{size:,} B" if size < 1_000 else f"{size // 1_000} KB"
            for operation, by_variant in rounds.items():
                plain, sealed, ratio = median_ratio(by_variant)
                print(f"{label:>7} {operation:>16} {plain:>9.2f} {sealed:>13.2f} {ratio:>5.2f}x")

        hits: dict[str, list[float]] = {"plain": [], "encrypted": []}
        caches = {name: MultilayerCache([InMemoryLayer(max_size=1_000), layer])
                  for name, layer in layers.items()}  # fmt: skip
        for cache in caches.values():
            cache.set("hot", {"n": 1})
        for _ in range(args.repeat):
            for name, cache in caches.items():
                hits[name].append(timed(lambda cache=cache: cache.get("hot"), 200_000) * 1000)
        plain, sealed, ratio = median_ratio(hits)
        print(f"L1 hit (ns): L2 plain {plain:.0f}, L2 encrypted {sealed:.0f}: {ratio:.2f}x")
        for layer in layers.values():
            layer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
