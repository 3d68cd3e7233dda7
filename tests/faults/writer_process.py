"""A service that writes through a write-behind cache as fast as it can, for the tests that end
it from outside (SIGTERM, SIGKILL): ``python writer_process.py URL PREFIX ACK_FILE [options]``.

It writes ``k{i % keys}`` = ``i`` for i = 0, 1, 2, ... and, after each ``set()`` returns,
stores ``i`` in ``ACK_FILE`` (8 bytes, memory-mapped): the last write it was told is safe. It
prints ``ready`` once ``--ready-after`` writes were acknowledged, and goes on until the cache
refuses writes (closed by the SIGTERM handler) or it is killed; with ``--end-by`` it stops
there and ends by ``sys.exit(3)`` or an uncaught exception.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import mmap
import signal
import struct
import sys
import threading
import time
from pathlib import Path

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
    RedisLayer,
    WriteBehind,
)
from multilayercache.core.writepolicy import WriteQueueClosed


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("prefix")
    parser.add_argument("ack", type=Path)
    parser.add_argument("--mode", choices=["sync", "asyncio"], default="sync")
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--ready-after", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--max-delay", type=float, default=0.05)
    parser.add_argument("--max-items", type=int, default=200_000)
    parser.add_argument("--max-lag", type=float, default=None)
    parser.add_argument("--journal", default=None)
    parser.add_argument("--dead-letter", default=None)
    parser.add_argument("--close-timeout", type=float, default=10.0)
    parser.add_argument(
        "--main-in-c",
        action="store_true",
        help="(sync) once ready, the main thread runs a long C call that ignores signals",
    )
    parser.add_argument(
        "--own-handler", action="store_true", help="the service installs its own SIGTERM handler"
    )
    parser.add_argument(
        "--end-by",
        choices=["exit", "exception"],
        default=None,
        help="after --ready-after writes, end by sys.exit(3) or an uncaught exception",
    )
    return parser.parse_args()


class Acks:
    """The last acknowledged write, in a file the parent reads after the process ended."""

    def __init__(self, path: Path) -> None:
        path.write_bytes(struct.pack("<q", -1))
        self._file = open(path, "r+b")  # noqa: SIM115 - lives as long as the process
        self._map = mmap.mmap(self._file.fileno(), 8)

    def store(self, index: int) -> None:
        struct.pack_into("<q", self._map, 0, index)


def policy(args: argparse.Namespace) -> LayerPolicy:
    return LayerPolicy(
        write=WriteBehind(
            batch_size=args.batch_size,
            max_delay=args.max_delay,
            max_items=args.max_items,
            max_lag=args.max_lag,
            journal=args.journal,
            dead_letter=args.dead_letter,
            close_timeout=args.close_timeout,
            when_full="block",
            block_timeout=None,
        )
    )


def run_sync(args: argparse.Namespace, acks: Acks, stop: threading.Event) -> None:
    l2 = RedisLayer(args.url, prefix=args.prefix)
    cache = MultilayerCache([InMemoryLayer(max_size=1000), l2], [None, policy(args)])

    ready = threading.Event()

    def write() -> None:
        index = 0
        try:
            while not stop.is_set():
                cache.set(f"k{index % args.keys}", index)
                acks.store(index)
                if index == args.ready_after:
                    ready.set()
                    print("ready", flush=True)
                    if args.end_by:
                        return
                index += 1
        except WriteQueueClosed:
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    if args.main_in_c:
        ready.wait()
        # Minutes of C code that releases the GIL and never looks at signals: Python runs
        # no signal handler in this thread until it returns.
        hashlib.pbkdf2_hmac("sha256", b"main", b"thread", 10**9)
    while writer.is_alive():  # the main thread waits, as a server's would
        time.sleep(0.05)
    if args.end_by:
        end(args.end_by)
    print("writer stopped", flush=True)
    while not stop.is_set():
        time.sleep(0.05)


def run_asyncio(args: argparse.Namespace, acks: Acks, stop: threading.Event) -> None:
    async def main() -> None:
        l2 = AsyncRedisLayer(args.url, prefix=args.prefix)
        cache = AsyncMultilayerCache([InMemoryLayer(max_size=1000), l2], [None, policy(args)])
        index = 0
        try:
            while not stop.is_set():
                await cache.set(f"k{index % args.keys}", index)
                acks.store(index)
                if index == args.ready_after:
                    print("ready", flush=True)
                    if args.end_by:
                        end(args.end_by)
                index += 1
                if index % 100 == 0:
                    await asyncio.sleep(0)  # a service's other tasks run too
        except WriteQueueClosed:
            print("writer stopped", flush=True)
        while not stop.is_set():
            await asyncio.sleep(0.05)

    asyncio.run(main())


def end(how: str) -> None:
    """End the process the way a service fails: ``sys.exit`` or an uncaught exception
    (raised in the main thread, or out of ``asyncio.run``)."""
    if how == "exit":
        sys.exit(3)
    raise RuntimeError("the service failed")


def main() -> None:
    args = parse()
    stop = threading.Event()
    if args.own_handler:  # a graceful shutdown of the service's own: stop, then exit normally
        signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    acks = Acks(args.ack)
    (run_sync if args.mode == "sync" else run_asyncio)(args, acks, stop)
    print("exiting", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
