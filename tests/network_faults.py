"""Network faults the tests control, on loopback: ``Blackhole``, an address that accepts
connections and never answers, and ``Proxy``, a TCP proxy that cuts the clients behind it
off from a server while the others carry on.

    with Blackhole() as hole:
        RedisLayer(hole.url)                       # every call waits for its timeout

    with Proxy(server.port) as proxy:
        RedisLayer(proxy.url)                      # through the proxy
        proxy.cut(); ...; proxy.restore()          # this client alone is cut off
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from types import TracebackType
from typing import Literal


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
            proxy.cut_open()        # or: the connections open now hang, new ones work
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

    def cut_open(self) -> None:
        """Cut off the connections open now as ``cut("hang")`` does, while new ones go
        through: one connection of a client's pool stuck (a firewall or NAT that dropped
        its state) while the client's new connections work. ``restore`` resets it."""
        with self._lock:
            for link in self._links:
                link.severed = True

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


__all__ = ["Blackhole", "CutMode", "Proxy"]
