"""Real servers stopped the way they are in production: gunicorn (sync workers, with and
without ``--preload``) and uvicorn get SIGTERM while their write-behind queues hold writes
that requests acknowledged. Their graceful shutdowns end in a normal exit, or in SIGTERM
raised again, and either way every acknowledged write reaches Redis."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from multilayercache.tools.servers import free_port

from services import lost_writes

pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn")

APP = textwrap.dedent(
    """
    from multilayercache import (AsyncMultilayerCache, AsyncRedisLayer, InMemoryLayer,
                                 LayerPolicy, MultilayerCache, RedisLayer, WriteBehind)

    URL, PREFIX = {url!r}, {prefix!r}
    # Held: nothing is sent before the server stops (as far as the queue can tell, a
    # writer faster than Redis).
    HELD = WriteBehind(batch_size=100_000, max_delay=60, max_lag=None)
    POLICIES = [None, LayerPolicy(write=HELD)]

    cache = MultilayerCache([InMemoryLayer(max_size=100), RedisLayer(URL, prefix=PREFIX)],
                            POLICIES)
    acache = AsyncMultilayerCache(
        [InMemoryLayer(max_size=100), AsyncRedisLayer(URL, prefix=PREFIX)], POLICIES)

    def wsgi(environ, start_response):
        index = int(environ["PATH_INFO"].rsplit("/", 1)[1])
        cache.set(f"k{{index}}", index)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return
        index = int(scope["path"].rsplit("/", 1)[1])
        await acache.set(f"k{{index}}", index)
        await send({{"type": "http.response.start", "status": 200, "headers": []}})
        await send({{"type": "http.response.body", "body": b"ok"}})
    """
)


def serve(command: list[str], folder: Path, url: str, prefix: str, port: int) -> subprocess.Popen:
    (folder / "app.py").write_text(APP.format(url=url, prefix=prefix))
    process = subprocess.Popen(
        command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        probe = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            probe.request("GET", "/set/-1")
            probe.getresponse().read()
            return process
        except OSError:
            time.sleep(0.1)
        finally:
            probe.close()
    process.kill()
    raise AssertionError(f"the server did not start: {process.communicate()[1][-2000:]}")


def acknowledged(port: int, count: int) -> int:
    """Send ``count`` requests; the highest index whose response said it was stored."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    last = -1
    for index in range(count):
        connection.request("GET", f"/set/{index}")
        response = connection.getresponse()
        assert response.read() == b"ok"
        last = index
    connection.close()
    return last


def stop(process: subprocess.Popen) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    try:
        _, errors = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        errors = process.communicate()[1][-2000:]
        raise AssertionError(f"the server did not stop: {errors}") from None
    return process.returncode, errors


@pytest.mark.parametrize("preload", [False, True], ids=["workers", "preload"])
def test_gunicorn_stopped_by_sigterm_delivers_every_acknowledged_write(
    preload: bool, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}"]
    server = serve([*command, *(["--preload"] if preload else []), "app:wsgi"],
                   tmp_path, redis_url, prefix, port)  # fmt: skip
    try:
        last = acknowledged(port, 2000)
    finally:
        status, errors = stop(server)
    assert status == 0, errors[-2000:]  # gunicorn's own graceful exit
    assert lost_writes(redis_url, prefix, last) == [], errors[-2000:]


def test_uvicorn_stopped_by_sigterm_delivers_every_acknowledged_write(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--port", str(port), "--log-level", "warning"]
    server = serve([*command, "app:asgi"], tmp_path, redis_url, prefix, port)
    try:
        last = acknowledged(port, 2000)
    finally:
        status, errors = stop(server)
    # uvicorn shuts down gracefully, then raises SIGTERM again for the handler it found.
    assert status in (0, -signal.SIGTERM), errors[-2000:]
    assert lost_writes(redis_url, prefix, last) == [], errors[-2000:]
