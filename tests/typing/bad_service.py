"""What ``mypy --strict`` must reject: the decorated functions keep their signatures."""

from __future__ import annotations

from multilayercache import InMemoryLayer, MultilayerCache

cache = MultilayerCache([InMemoryLayer(max_size=10)])


@cache.cached()
def square(x: int) -> int:
    return x * x


square("three")  # wrong argument type
square.invalidate(1, 2)  # too many arguments
text: str = square(3)  # wrong result type
