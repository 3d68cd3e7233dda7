"""redis and hiredis are an extra (``multilayercache[redis]``): without them the package
imports and an L1-only cache works, and asking for a Redis layer says which extra to install.

Each test runs a fresh interpreter in which ``import redis`` / ``import hiredis`` fail as they
do where the packages are not installed (a ``None`` entry in ``sys.modules``); the same was
checked by hand in a virtualenv without them (docs/building.md).
"""

import json
import subprocess
import sys
import textwrap

WITHOUT_REDIS = "import sys\nsys.modules['redis'] = sys.modules['hiredis'] = None\n"


def run(code: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_REDIS + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_an_l1_only_cache_works_without_redis() -> None:
    seen = run(
        """
        import asyncio, json
        from multilayercache import AsyncMultilayerCache, InMemoryLayer, MultilayerCache
        from multilayercache import WriteBehind, WriterLayer

        cache = MultilayerCache([InMemoryLayer(max_size=100)])
        cache.set("a", 1)
        loaded = cache.get_or_load("b", lambda key: key * 2)

        async def main():
            cache = AsyncMultilayerCache([InMemoryLayer(max_size=100)])
            await cache.set("x", [1, 2])
            return await cache.get("x")

        print(json.dumps({
            "get": cache.get("a"), "loaded": loaded, "async": asyncio.run(main()),
            "redis_imported": [name for name in sys.modules if name.startswith("redis")
                               and sys.modules[name] is not None],
        }))
        """
    )
    assert seen == {"get": 1, "loaded": "bb", "async": [1, 2], "redis_imported": []}


def test_import_star_without_redis_leaves_the_redis_layers_out() -> None:
    seen = run(
        """
        import json
        namespace = {}
        exec("from multilayercache import *", namespace)
        print(json.dumps({name: name in namespace for name in
                          ("MultilayerCache", "InMemoryLayer", "RedisLayer", "AsyncRedisLayer")}))
        """
    )
    assert seen == {
        "MultilayerCache": True,
        "InMemoryLayer": True,
        "RedisLayer": False,
        "AsyncRedisLayer": False,
    }
    import multilayercache  # with redis (this interpreter): they are part of it

    assert {"RedisLayer", "AsyncRedisLayer"} <= set(multilayercache.__all__)


def test_a_redis_layer_without_redis_names_the_extra() -> None:
    seen = run(
        """
        import json
        import multilayercache
        errors = []
        for name in ("RedisLayer", "AsyncRedisLayer"):
            try:
                getattr(multilayercache, name)
            except ImportError as error:
                errors.append(str(error))
        try:
            multilayercache.MultilayerCache(
                [multilayercache.InMemoryLayer(max_size=10)], backplane="redis://localhost:1"
            )
        except ImportError as error:
            errors.append(str(error))
        try:
            multilayercache.NoSuchName
        except AttributeError as error:
            errors.append(str(error))
        print(json.dumps(errors))
        """
    )
    assert len(seen) == 4
    for message in seen[:3]:
        assert "pip install 'multilayercache[redis]'" in message
        assert "redis" in message.split("(")[1]
    assert seen[3] == "module 'multilayercache' has no attribute 'NoSuchName'"
