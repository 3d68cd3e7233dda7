"""A service ends while its write-behind queue holds writes it acknowledged: by
``sys.exit``, by an uncaught exception, by Ctrl-C (SIGINT). Each is a normal interpreter
exit as far as the cache is concerned: ``atexit`` closes the queues, which deliver every
acknowledged write before the process is gone, and the process ends with the status it
would have had without the cache. (SIGTERM and SIGKILL: test_sigterm.py, test_journal.py,
test_frameworks.py.)

Real processes (``writer_process.py``); the queue holds every write back until the end
(batches never fill or age), so that delivery at exit is all there is."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from services import Service, lost_writes

HELD = ("--batch-size", "200000", "--max-delay", "60", "--ready-after", "5000")
STATUS = {"exit": 3, "exception": 1}


@pytest.mark.parametrize("end", ["exit", "exception", "sigint"])
@pytest.mark.parametrize("mode", ["sync", "asyncio"])
def test_every_acknowledged_write_is_delivered_however_the_process_ends(
    mode: str, end: str, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    ending = () if end == "sigint" else ("--end-by", end)
    service = Service(redis_url, prefix, tmp_path, "--mode", mode, *HELD, *ending)
    service.wait_for("ready")
    if end == "sigint":
        service.process.send_signal(signal.SIGINT)
    status = service.end()
    if end == "sigint":  # Python ends an uncaught KeyboardInterrupt as SIGINT would
        assert status == -signal.SIGINT, service.stderr()
    else:
        assert status == STATUS[end], service.stderr()
        assert ("the service failed" in service.stderr()) == (end == "exception")
    last = service.acknowledged()
    assert last >= 5_000
    assert lost_writes(redis_url, prefix, last) == []
