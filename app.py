
from multilayercache import (AsyncMultilayerCache, AsyncRedisLayer, InMemoryLayer,
                             LayerPolicy, MultilayerCache, RedisLayer, WriteBehind)

URL, PREFIX = 'redis://127.0.0.1:57387/0', 'uv:'
# Held: nothing is sent before the server stops (as far as the queue can tell, a
# writer faster than Redis).
POLICIES = [None, LayerPolicy(write=WriteBehind(batch_size=100_000, max_delay=60))]

cache = MultilayerCache([InMemoryLayer(max_size=100), RedisLayer(URL, prefix=PREFIX)],
                        POLICIES)
acache = AsyncMultilayerCache(
    [InMemoryLayer(max_size=100), AsyncRedisLayer(URL, prefix=PREFIX)], POLICIES)

def wsgi(environ, start_response):
    index = int(environ["PATH_INFO"].rsplit("/", 1)[1])
    cache.set(f"k{index}", index)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    index = int(scope["path"].rsplit("/", 1)[1])
    await acache.set(f"k{index}", index)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
