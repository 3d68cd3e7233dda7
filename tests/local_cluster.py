"""A local Redis Cluster for the tests: masters on free loopback ports, slots split evenly,
no replicas.

    with RedisCluster.start(masters=3) as cluster:
        client = redis.cluster.RedisCluster.from_url(cluster.url)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from types import TracebackType

import redis

from multilayercache.tools.servers import (
    START_TIMEOUT_SECONDS,
    RedisServer,
    ServerUnavailableError,
)

CLUSTER_SLOTS = 16384


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


__all__ = ["RedisCluster"]
