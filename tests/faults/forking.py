"""Helpers of the fork tests: run a function in a forked child, and an event loop of the
parent's own in a thread (so that asyncio work can be in flight when the parent forks)."""

from __future__ import annotations

import asyncio
import os
import pickle
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

CHILD_WAIT_SECONDS = float(os.environ.get("FORK_CHILD_WAIT", 10.0))
"""How long the parent waits for a child's answer before it calls the child hung."""


class ChildHung(AssertionError):
    """A forked child did not answer in time (it was killed)."""


def in_child(work: Callable[[], Any], wait: float = CHILD_WAIT_SECONDS) -> Any:
    """Fork; the child runs ``work()`` and sends its result back through a pipe, then
    exits with ``os._exit``. The parent waits up to ``wait`` seconds (then kills the child
    and raises ``ChildHung``); a child's exception fails the test with its traceback."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test runner
        os.close(read_end)
        try:
            answer = pickle.dumps(("ok", work()))
        except BaseException:  # everything goes back to the parent
            answer = pickle.dumps(("error", traceback.format_exc()))
        try:
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(answer)
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        data = read_within(read_end, wait)
    finally:
        os.close(read_end)
        reap(pid)
    if data is None:
        raise ChildHung(f"the forked child did not answer within {wait} s")
    status, value = pickle.loads(data)
    if status == "error":
        pytest.fail(f"the forked child failed:\n{value}")
    return value


def read_within(fd: int, wait: float) -> bytes | None:
    """Everything written to the pipe until its writer closes it, or ``None`` if that takes
    longer than ``wait`` seconds."""
    deadline = time.monotonic() + wait
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def reap(pid: int) -> None:
    """Wait for the child to exit, killing it if it has not (a hung one)."""
    for _ in range(100):
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()`` and how long it took, in seconds."""
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


class LoopThread:
    """An event loop running in a thread of the parent, as a service's would."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def start(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Schedule ``coroutine`` on the loop; its ``concurrent.futures.Future``."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 5.0) -> Any:
        return self.start(coroutine).result(timeout)

    def close(self) -> None:
        async def cancel_the_rest() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


def holding(lock: Any) -> tuple[threading.Thread, threading.Event]:
    """A thread that holds ``lock`` until the returned event is set (the parent thread that
    was inside a critical section when the process forked)."""
    taken, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert taken.wait(5)
    return thread, release
