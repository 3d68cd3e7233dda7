"""Fleet single flight across real processes, for the tests and the benchmark: several
instance processes (spawned), each with many callers (threads, or asyncio tasks) asking for
one cold key at once; optionally the process whose loader runs first is SIGKILLed mid-load.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from multilayercache import (
    AsyncMultilayerCache,
    AsyncRedisLayer,
    InMemoryLayer,
    LoadOptions,
    MultilayerCache,
    RedisLayer,
)


@dataclass
class Stampede:
    """What one run saw."""

    loads: int
    """Loader calls in all processes."""
    waits: list[float]
    """Every caller's seconds in ``get_or_load`` (of the processes that lived)."""
    values: dict[str, int]
    """How many callers got each value."""
    errors: list[str]
    fleet: list[dict[str, int]]
    """Each surviving process's ``stats().fleet_flight``."""
    commands: dict[str, int] = field(default_factory=dict)
    """Redis commands the run sent (``INFO commandstats``, calls by command)."""
    killed_after: float | None = None
    """Seconds from the start to the SIGKILL of the first loader's process."""


def stampede(
    url: str,
    prefix: str,
    kind: str,
    processes: int = 3,
    callers: int = 50,
    load_seconds: float = 0.2,
    lease: float = 2.0,
    kill_first_loader: bool = False,
    key: str = "cold",
    fleet: bool = True,
) -> Stampede:
    """``processes`` instances x ``callers`` callers of ``get_or_load(key)`` at once, with a
    loader that takes ``load_seconds`` (the first one forever, and its process killed, with
    ``kill_first_loader``); ``fleet``: with fleet single flight (else per process only)."""
    context = multiprocessing.get_context("spawn")
    loads = context.Value("i", 0)
    first_loader = context.Value("i", -1)  # the index of the process whose loader ran first
    ready = context.Barrier(processes + 1)
    go = context.Event()
    results: Any = context.Queue()
    children = [
        context.Process(
            target=_instance,
            args=(
                url,
                prefix,
                kind,
                index,
                callers,
                load_seconds,
                lease,
                kill_first_loader,
                key,
                fleet,
                loads,
                first_loader,
                ready,
                go,
                results,
            ),
        )  # fmt: skip
        for index in range(processes)
    ]
    for child in children:
        child.start()
    admin = redis.Redis.from_url(url)
    killed_after = None
    try:
        ready.wait(timeout=60)
        admin.config_resetstat()
        started = time.monotonic()
        go.set()
        if kill_first_loader:
            while first_loader.value < 0 and time.monotonic() - started < 10:
                time.sleep(0.001)
            time.sleep(0.05)  # mid-load
            os.kill(children[first_loader.value].pid, signal.SIGKILL)
            killed_after = time.monotonic() - started
        reports = [results.get(timeout=60) for _ in range(processes - bool(kill_first_loader))]
        commands = _commands(admin)
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
        admin.close()
    values: dict[str, int] = {}
    for report in reports:
        for value in report["values"]:
            values[value] = values.get(value, 0) + 1
    return Stampede(
        loads=loads.value,
        waits=[wait for report in reports for wait in report["waits"]],
        values=values,
        errors=[error for report in reports for error in report["errors"]],
        fleet=[report["fleet"] for report in reports],
        commands=commands,
        killed_after=killed_after,
    )


def _commands(admin: redis.Redis) -> dict[str, int]:
    stats = admin.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def _instance(
    url: str,
    prefix: str,
    kind: str,
    index: int,
    callers: int,
    load_seconds: float,
    lease: float,
    kill_first_loader: bool,
    key: str,
    fleet: bool,
    loads: Any,
    first_loader: Any,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    options = LoadOptions(fleet_single_flight=fleet, fleet_lease=lease)

    def loaded() -> str:
        with loads.get_lock():
            loads.value += 1
            first = loads.value == 1
        if first:
            first_loader.value = index
            if kill_first_loader:
                time.sleep(3600)  # killed meanwhile
        return f"loaded by {index}"

    if kind == "asyncio":
        results.put(asyncio.run(_tasks(url, prefix, callers, load_seconds, options, key,
                                       loaded, ready, go)))  # fmt: skip
        return
    cache = MultilayerCache(
        [InMemoryLayer(max_size=100), RedisLayer(url, prefix=prefix)],
        load_options=options,
        backplane=True,
    )

    def load(_: str) -> str:
        value = loaded()
        time.sleep(load_seconds)
        return value

    waits: list[float] = []
    values: list[str] = []
    errors: list[str] = []

    def call() -> None:
        start = time.monotonic()
        try:
            values.append(cache.get_or_load(key, load))
        except Exception as error:
            errors.append(repr(error))
        waits.append(time.monotonic() - start)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    cache.get("warm-up")  # connected before the start
    ready.wait(timeout=60)
    go.wait(timeout=60)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(
        {"waits": waits, "values": values, "errors": errors, "fleet": cache.stats().fleet_flight}
    )
    cache.close()


async def _tasks(
    url: str,
    prefix: str,
    callers: int,
    load_seconds: float,
    options: LoadOptions,
    key: str,
    loaded: Any,
    ready: Any,
    go: Any,
) -> dict[str, Any]:
    cache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=100), AsyncRedisLayer(url, prefix=prefix)],
        load_options=options,
        backplane=True,
    )

    async def load(_: str) -> str:
        value = await asyncio.to_thread(loaded)  # (it sleeps forever in a killed process)
        await asyncio.sleep(load_seconds)
        return value

    waits: list[float] = []
    values: list[str] = []
    errors: list[str] = []

    async def call() -> None:
        start = time.monotonic()
        try:
            values.append(await cache.get_or_load(key, load))
        except Exception as error:
            errors.append(repr(error))
        waits.append(time.monotonic() - start)

    await cache.get("warm-up")  # connected before the start
    await asyncio.to_thread(ready.wait, 60)
    await asyncio.to_thread(go.wait, 60)
    await asyncio.gather(*(call() for _ in range(callers)))
    report = {"waits": waits, "values": values, "errors": errors,
              "fleet": cache.stats().fleet_flight}  # fmt: skip
    await cache.close()
    return report
