"""The throwaway servers of fault tests: a server restarted on its own port after a
SIGKILL, paused and resumed, a blackhole that accepts connections and never answers, and
a proxy that cuts its clients off from a server while others carry on."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import redis

from multilayercache.tools.servers import RedisServer

from network_faults import Blackhole, Proxy

# What a production Redis does to keep acknowledged writes across a crash.
PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")


def test_a_killed_server_restarts_on_its_port_with_its_data() -> None:
    with RedisServer.start(*PERSISTENT, use_env=False) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=1)
        client.set("kept", "across the crash")
        first_pid = server.process.pid
        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.restart()
        assert server.process.pid != first_pid and server.url.endswith(f":{server.port}/0")
        assert client.get("kept") == b"across the crash"  # read back from the same folder
        client.close()


def test_restart_waits_for_a_port_that_is_busy_for_a_moment() -> None:
    with RedisServer.start(use_env=False) as server:
        server.kill()
        squatter = socket.socket()
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()
        threading.Timer(0.2, squatter.close).start()
        server.restart()  # fails to bind at first, then gets the port back
        client = redis.Redis.from_url(server.url)
        assert client.info("server")["process_id"] == server.process.pid  # ours, not another
        client.close()


def test_only_a_server_started_here_can_be_restarted() -> None:
    external = RedisServer(url="redis://127.0.0.1:6379/0", port=6379)  # as from REDIS_URL
    with pytest.raises(RuntimeError, match="REDIS_URL"):
        external.restart()


def test_a_blackhole_accepts_and_never_answers() -> None:
    with Blackhole() as hole:
        assert hole.url == f"redis://127.0.0.1:{hole.port}/0"
        client = redis.Redis.from_url(hole.url, socket_connect_timeout=1, socket_timeout=0.2)
        start = time.monotonic()
        with pytest.raises(redis.TimeoutError):  # connected, then no reply
            client.ping()
        assert 0.2 <= time.monotonic() - start < 2
        # A burst of connects, as a pool opens them: every one is accepted, and held.
        clients = [socket.create_connection(("127.0.0.1", hole.port), 1) for _ in range(150)]
        deadline = time.monotonic() + 5
        while len(hole.accepted) < 151 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(hole.accepted) == 151
        client.close()
    for connection in clients:
        connection.close()
    with pytest.raises(ConnectionRefusedError):  # closed: nothing listens any more
        socket.create_connection(("127.0.0.1", hole.port), 1)
    assert hole.accepted == []


def test_a_paused_server_answers_nothing_until_resumed() -> None:
    with RedisServer.start(use_env=False) as server:
        client = redis.Redis.from_url(server.url, socket_timeout=0.2)
        client.set("k", "v")
        server.pause()
        with pytest.raises(redis.TimeoutError):
            client.get("k")
        server.resume()
        assert client.get("k") == b"v"  # redis-py reconnected after the timeout
        server.pause()  # stop() ends a paused server too, at once
        start = time.monotonic()
        server.stop()
        assert time.monotonic() - start < 2
        client.close()


def test_a_proxy_cuts_its_clients_off_and_no_one_else(redis_url: str) -> None:
    port = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
    direct = redis.Redis.from_url(redis_url, socket_timeout=1)
    with Proxy(port) as proxy:
        through = redis.Redis.from_url(proxy.url, socket_timeout=0.2, socket_connect_timeout=0.2)
        through.set("proxied", "yes")
        assert direct.get("proxied") == b"yes" and proxy.connections == 1
        proxy.cut()  # hang: calls time out, the direct client carries on
        start = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            through.get("proxied")
        assert 0.2 <= time.monotonic() - start < 1
        assert direct.get("proxied") == b"yes"
        proxy.restore()
        assert through.get("proxied") == b"yes"
        proxy.cut("reset")  # calls fail at once
        start = time.monotonic()
        with pytest.raises(redis.ConnectionError):
            through.get("proxied")
        assert time.monotonic() - start < 0.2
        proxy.restore()
        proxy.latency = 0.05
        start = time.monotonic()
        assert through.get("proxied") == b"yes"
        assert time.monotonic() - start >= 0.1  # there and back
        through.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), 1)
    direct.delete("proxied")
    direct.close()
