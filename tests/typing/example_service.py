"""A small typed service, as a user writes one: ``mypy --strict`` must accept it
(``tests/typing/test_mypy.py``), which checks that the decorators keep the functions'
signatures and offer ``.invalidate`` / ``.cache_key`` with the same parameters."""

from __future__ import annotations

import asyncio
import dataclasses

from multilayercache import (
    AsyncMultilayerCache,
    InMemoryLayer,
    LayerPolicy,
    MultilayerCache,
)


@dataclasses.dataclass(frozen=True)
class Product:
    id: int
    name: str
    price: float


cache = MultilayerCache([InMemoryLayer(max_size=1_000)], [LayerPolicy(ttl=30)])
acache = AsyncMultilayerCache([InMemoryLayer(max_size=1_000)])


@cache.cached(ttl=60, condition=lambda product: product is not None)
def product(product_id: int, *, currency: str = "EUR") -> Product | None:
    if product_id < 0:
        return None
    return Product(product_id, f"product {product_id}", 9.99)


@acache.cached(ttl=60)
async def price(product_id: int) -> float:
    await asyncio.sleep(0)
    return 9.99


def rename(product_id: int, name: str) -> Product | None:
    current = product(product_id)
    if current is None:
        return None
    product.invalidate(product_id)  # same parameters as product()
    key = product.cache_key(product_id, currency="EUR")
    print(key)
    return dataclasses.replace(current, name=name)


async def repriced(product_id: int) -> float:
    old: float = await price(product_id)
    forgot: bool = await price.invalidate(product_id)
    assert forgot
    return old * 1.1


def total(ids: list[int]) -> float:
    found = cache.get_or_load_many(ids, lambda missing: {i: float(i) for i in missing})
    return sum(float(value) for value in found.values())


if __name__ == "__main__":
    print(rename(1, "renamed"), total([1, 2]), asyncio.run(repriced(1)))
