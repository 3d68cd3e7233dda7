"""Every ```python block of README.md and of docs/*.md runs, against a real throwaway server.

The examples are what a newcomer copies first, so an example that no longer runs (a renamed
argument, a missing import, a wrong call) fails here. Each block runs on its own, as a module
body (top-level ``await`` allowed, as in an asyncio REPL), in a namespace that gives the
placeholders the prose leaves to the reader (``db``, ``url``, ``cache``, ``l1``, a loader...)
something real to stand on. The examples' Redis URL and ``"app:"`` prefix are pointed at the
test's server and a prefix of its own, so no block sees another's keys.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import inspect
import re
import textwrap
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import multilayercache
from multilayercache import (
    AsyncMultilayerCache,
    InMemoryLayer,
    MultilayerCache,
    RedisLayer,
)
from multilayercache.core.events import Anomaly

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# A fence opens a block (maybe indented inside a list item) and the same indent closes it.
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)
EXAMPLE_URL = "redis://127.0.0.1:6379/0"


@dataclasses.dataclass
class Block:
    document: Path
    line: int
    source: str

    @property
    def name(self) -> str:
        return f"{self.document.name}:{self.line}"


def python_blocks() -> Iterator[Block]:
    for document in DOCUMENTS:
        text = document.read_text()
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 2
            yield Block(document, line, textwrap.dedent(match["body"]))


BLOCKS = list(python_blocks())


def test_the_readme_has_examples_to_run() -> None:
    # Guards the extraction itself: a fence the pattern stopped matching would pass silently.
    assert sum(block.document.name == "README.md" for block in BLOCKS) >= 10


@dataclasses.dataclass
class User:
    id: int
    name: str = "Ada"
    active: bool = True
    version: int = 1


class Database:
    """What the examples call ``db``: a source of users that counts its loads."""

    def __init__(self) -> None:
        self.loads = 0

    def load_user(self, user_id: Any) -> User:
        self.loads += 1
        return User(id=hash(user_id) % 1000)

    def version_of(self, key: Any) -> int:
        return 1


class PrometheusServer:
    """``prometheus_client.start_http_server(9100)``, on a free port: a fixed one may be taken."""

    def __init__(self) -> None:
        self.servers: list[Any] = []

    def start_http_server(self, port: int) -> None:
        import prometheus_client

        self.servers.append(prometheus_client.start_http_server(0))

    def stop(self) -> None:
        for server, thread in self.servers:
            server.shutdown()
            server.server_close()
            thread.join(5)


def namespace(url: str, prefix: str) -> dict[str, Any]:
    """The placeholders the README leaves to the reader, each given something real."""
    l1 = InMemoryLayer(max_size=10_000)
    l2 = RedisLayer(url, prefix=prefix)

    async def fetch_user(key: Any) -> User:
        return User(id=1)

    return {
        # What the first example imports, later ones take as read.
        **{name: getattr(multilayercache, name) for name in multilayercache.__all__},
        "__name__": "readme_example",
        "url": url,
        "db": Database(),
        "User": User,
        "Product": User,
        "Decimal": Decimal,
        "uid": 1,
        "ids": ["user:1", "user:2", "user:3"],
        "bulk_loader": lambda keys: {key: User(id=1) for key in keys},
        "owner": "worker-1",
        "token": "s3cret",
        "fetch_user": fetch_user,
        "load_user": lambda key: User(id=1),
        "load_order": lambda key: {"order": key},
        "key": "order:1",
        "page_someone": lambda anomaly: None,
        "page": lambda message: None,
        "event": Anomaly(kind="key_spike", layer="memory", observed=0.5, baseline=0.1, key="k"),
        "l1": l1,
        "l2": l2,
        "sessions_l1": InMemoryLayer(max_size=100),
        "cache": MultilayerCache([l1, l2]),
        "prometheus_client": PrometheusServer(),
    }


def pointed_at(source: str, url: str, prefix: str) -> str:
    return source.replace(EXAMPLE_URL, url).replace('"app:"', repr(prefix))


def run(source: str, filename: str, globals_: dict[str, Any]) -> None:
    code = compile(source, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, globals_))
    else:
        exec(code, globals_)


@pytest.fixture
def created_caches(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every manager an example builds, closed afterwards (examples rebind ``cache``)."""
    created: list[Any] = []
    for manager in (MultilayerCache, AsyncMultilayerCache):
        original = manager.__init__

        def recording_init(self: Any, *args: Any, _original: Any = original, **kw: Any) -> None:
            _original(self, *args, **kw)
            created.append(self)

        monkeypatch.setattr(manager, "__init__", recording_init)
    yield created
    for cache in created:
        if isinstance(cache, MultilayerCache):
            cache.close()


@pytest.fixture
def clean_prometheus_registry() -> Iterator[None]:
    prometheus_client = pytest.importorskip("prometheus_client")
    before = set(prometheus_client.REGISTRY._collector_to_names)
    yield
    for collector in set(prometheus_client.REGISTRY._collector_to_names) - before:
        prometheus_client.REGISTRY.unregister(collector)


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.name)
def test_the_example_runs(
    block: Block,
    redis_url: str,
    prefix: str,
    created_caches: list[Any],
    clean_prometheus_registry: None,
) -> None:
    globals_ = namespace(redis_url, prefix)
    created_caches.append(globals_["cache"])
    try:
        run(pointed_at(block.source, redis_url, prefix), block.name, globals_)
    finally:
        globals_["prometheus_client"].stop()
