"""How often a failing loader is called per key while Redis is dead (fail-safe on, the
default ``LoadOptions``): the stale copies were in Redis only, so no caller has one.

    python benchmarks/failing_loads.py [--seconds 6] [--threads 4] [--keys 20]

The keys are written through L1 + L2 with a short TTL and a long stale window in L2, L1
forgets them, Redis is SIGKILLed, and ``--threads`` threads call ``get_or_load`` on random
keys for ``--seconds`` with a loader that raises. Prints loader calls per key per second,
and what the callers got.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from collections import Counter

from multilayercache import InMemoryLayer, LayerPolicy, MultilayerCache, RedisLayer
from multilayercache.tools.servers import RedisServer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--keys", type=int, default=20)
    options = parser.parse_args()
    keys = [f"k{n}" for n in range(options.keys)]
    calls: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def load(key: str) -> str:
        with lock:
            calls[key] += 1
        raise ConnectionError("the database is down")

    with RedisServer.start(use_env=False) as server:
        l1 = InMemoryLayer(max_size=1_000)
        cache = MultilayerCache(
            [l1, RedisLayer(server.url, prefix="failing:")],
            [LayerPolicy(ttl=0.1), LayerPolicy(ttl=0.1, stale_ttl=3600)],
        )
        for key in keys:
            cache.set(key, f"value of {key}")
        time.sleep(0.2)  # stale in L2, gone from L1
        server.kill()
        stop = time.monotonic() + options.seconds

        def work(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                try:
                    cache.get_or_load(rng.choice(keys), load)
                    outcome = "value"
                except Exception as error:
                    outcome = type(error).__name__
                with lock:
                    outcomes[outcome] += 1

        threads = [threading.Thread(target=work, args=(n,)) for n in range(options.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = cache.stats()
        cache.close()
    per_key = sum(calls.values()) / len(keys)
    print(
        f"{options.threads} threads, {len(keys)} keys, {options.seconds:g} s, Redis dead, "
        f"loader failing: {per_key:.1f} loader calls per key "
        f"({per_key / options.seconds:.1f} per key per second)"
    )
    print(f"  callers got: {dict(outcomes)}; loader_calls={stats.loader_calls}")
    throttled = getattr(stats, "throttled_loads", None)
    if throttled is not None:
        print(f"  throttled_loads={throttled}")


if __name__ == "__main__":
    main()
