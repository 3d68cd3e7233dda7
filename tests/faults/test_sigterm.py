"""A service ended by SIGTERM (systemd, Kubernetes, Docker, gunicorn's master) loses none of
the writes its write-behind queue acknowledged: the cache's handler closes every queue, then
the process ends exactly as SIGTERM ends it. A service with a SIGTERM handler of its own
keeps it: it ends when it chooses, and its normal exit delivers the queue.

Real processes (``writer_process.py``) writing as fast as they can into a real server."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

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
