"""A service ended by SIGTERM (systemd, Kubernetes, Docker, gunicorn's master) loses none of
the writes its write-behind queue acknowledged: the cache's handler closes every queue, then
the process ends exactly as SIGTERM ends it. A service with a SIGTERM handler of its own
keeps it: it ends when it chooses, and its normal exit delivers the queue.

Real processes (``writer_process.py``) writing as fast as they can into a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from multilayercache import read_dead_letters

from services import Service, lost_writes

# Nothing is sent before SIGTERM: the batches never fill and never age (a writer faster than
# delivery, or a layer that just came back, as far as the queue can tell).
HELD = ("--batch-size", "200000", "--max-delay", "60", "--ready-after", "20000")


@pytest.mark.parametrize("mode", ["sync", "asyncio"])
def test_sigterm_delivers_every_queued_write_then_ends_the_process_as_sigterm_does(
    mode: str, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    service = Service(redis_url, prefix, tmp_path, "--mode", mode, *HELD)
    service.wait_for("ready")
    service.process.send_signal(signal.SIGTERM)
    assert service.end() == -signal.SIGTERM, service.stderr()  # killed by SIGTERM, as before
    last = service.acknowledged()
    assert last >= 20_000
    assert lost_writes(redis_url, prefix, last) == []


def test_sigterm_while_the_main_thread_is_stuck_in_c_code_still_delivers_every_write(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    # Python would run the handler only once the main thread's C call returns (minutes): a
    # process manager's SIGKILL comes first. The wakeup fd's watcher delivers meanwhile, and
    # the process ends by itself END_GRACE_SECONDS later.
    service = Service(redis_url, prefix, tmp_path, "--main-in-c", *HELD)
    service.wait_for("ready")
    service.process.send_signal(signal.SIGTERM)
    assert service.end(timeout=20) == 128 + signal.SIGTERM, service.stderr()
    last = service.acknowledged()
    assert last >= 20_000
    assert lost_writes(redis_url, prefix, last) == []


@pytest.mark.parametrize("mode", ["sync", "asyncio"])
def test_a_service_with_its_own_sigterm_handler_keeps_it_and_its_exit_delivers(
    mode: str, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    service = Service(redis_url, prefix, tmp_path, "--mode", mode, "--own-handler", *HELD)
    service.wait_for("ready")
    service.process.send_signal(signal.SIGTERM)
    assert service.end() == 0, service.stderr()  # the service's own way out: sys.exit(0)
    last = service.acknowledged()
    assert last >= 20_000
    assert lost_writes(redis_url, prefix, last) == []


def test_sigterm_while_redis_is_down_dead_letters_what_close_cannot_deliver(
    doomed_server, prefix: str, tmp_path: Path
) -> None:
    dead = tmp_path / "dead.jsonl"
    service = Service(
        doomed_server.url, prefix, tmp_path, *HELD, "--dead-letter", str(dead),
        "--close-timeout", "1",
    )  # fmt: skip
    service.wait_for("ready")
    doomed_server.kill()
    service.process.send_signal(signal.SIGTERM)
    assert service.end() == -signal.SIGTERM, service.stderr()
    kept = {record.key for record in read_dead_letters(dead)}
    last = service.acknowledged()
    assert all(f"k{index}" in kept for index in range(last + 1))


FORKING_SERVICE = """
import os, sys, time
from multilayercache import InMemoryLayer, LayerPolicy, MultilayerCache, RedisLayer, WriteBehind
cache = MultilayerCache(
    [InMemoryLayer(max_size=100), RedisLayer(sys.argv[1], prefix=sys.argv[2])],
    [None, LayerPolicy(write=WriteBehind(batch_size=100_000, max_delay=60))],
)
cache.set("parent", 1)
child = os.fork()
if child == 0:
    print(f"child {os.getpid()}", flush=True)
    time.sleep(60)
    os._exit(0)
os.waitpid(child, 0)  # the child's SIGTERM ends the child, and only the child
print("child ended", flush=True)
time.sleep(60)
"""


def test_a_forked_childs_sigterm_ends_the_child_not_its_parent(redis_url: str, prefix: str) -> None:
    # The child inherits the parent's signal wakeup pipe: were the parent's watcher to read
    # the child's SIGTERM from it, the parent would deliver and end.
    with subprocess.Popen(
        [sys.executable, "-c", FORKING_SERVICE, redis_url, prefix],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as parent:
        try:
            assert parent.stdout is not None and parent.stderr is not None
            line = parent.stdout.readline()
            assert line.startswith("child "), parent.stderr.read()
            os.kill(int(line.split()[1]), signal.SIGTERM)
            assert parent.stdout.readline().strip() == "child ended"
            time.sleep(1.0)  # the parent's watcher would have acted by now
            assert parent.poll() is None, "the child's SIGTERM ended the parent"
            parent.send_signal(signal.SIGTERM)
            assert parent.wait(20) == -signal.SIGTERM
        finally:
            parent.kill()
    assert redis.Redis.from_url(redis_url).exists(f"{prefix}parent")
