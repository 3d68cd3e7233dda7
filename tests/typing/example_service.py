"""A small typed service, as a user writes one: ``mypy --strict`` must accept it
(``tests/typing/test_mypy.py``), which checks that the decorators keep the functions'
signatures and offer ``.invalidate`` / ``.cache_key`` with the same parameters, on plain
functions and on methods, class methods and static methods (sync and asyncio), where
``self`` / ``cls`` is bound; and that ``get_or_load`` (and ``_many``) return the loader's
type."""

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


class Catalog:
    """Cached methods: the instance is part of the key through ``__cache_key__``."""

    def __init__(self, region: str) -> None:
        self.region = region

    def __cache_key__(self) -> str:
        return self.region

    @cache.cached(ttl=60)
    def product(self, product_id: int, *, currency: str = "EUR") -> Product:
        return Product(product_id, f"{self.region} product {product_id}", 9.99)

    @cache.cached(include_self=False)
    def name(self, product_id: int) -> str:
        return f"product {product_id}"

    @cache.cached()
    @classmethod
    def default_region(cls, country: str) -> str:
        return f"{cls.__name__}:{country}"

    @cache.cached()
    @staticmethod
    def vat(country: str) -> float:
        return 0.2

    @acache.cached(ttl=60)
    async def stock(self, product_id: int) -> int:
        await asyncio.sleep(0)
        return product_id % 7

    @acache.cached()
    @classmethod
    async def regions(cls, limit: int) -> list[str]:
        return ["eu", "us"][:limit]

    @acache.cached()
    @staticmethod
    async def exchange_rate(currency: str) -> float:
        return 1.1


def restock(catalog: Catalog, product_id: int) -> Product:
    found: Product = catalog.product(product_id, currency="USD")
    forgot: bool = catalog.product.invalidate(product_id, currency="USD")
    print(catalog.product.cache_key(product_id), Catalog.product.cache_key(catalog, product_id))
    unbound: Product = Catalog.product(catalog, product_id)
    title: str = catalog.name(product_id)
    region: str = Catalog.default_region("fr") + catalog.default_region("de")
    Catalog.default_region.invalidate("fr")
    vat: float = Catalog.vat("fr") + catalog.vat("de")
    Catalog.vat.invalidate("fr")
    print(forgot, unbound, title, region, vat)
    return found


async def stock_report(catalog: Catalog) -> str:
    count: int = await catalog.stock(3)
    forgot: bool = await catalog.stock.invalidate(3)
    regions: list[str] = await Catalog.regions(2)
    await Catalog.regions.invalidate(2)
    rate: float = await Catalog.exchange_rate("USD") * await catalog.exchange_rate("GBP")
    await catalog.exchange_rate.invalidate("USD")
    return f"{count} {forgot} {regions} {rate} {catalog.stock.cache_key(3)}"


def total(ids: list[int]) -> float:
    found = cache.get_or_load_many(ids, lambda missing: {i: float(i) for i in missing})
    return sum(float(value) for value in found.values())


def load_product(product_id: int) -> Product:
    return Product(product_id, f"product {product_id}", 9.99)


async def load_prices(ids: list[int]) -> dict[int, float]:
    return {product_id: 9.99 for product_id in ids}


def product_name(product_id: int) -> str:
    return cache.get_or_load(product_id, load_product).name  # a value of the loader's type


async def cheapest(ids: list[int]) -> float:
    first = await acache.get_or_load(ids[0], price)  # price's float
    prices = await acache.get_or_load_many(ids, load_prices)  # dict[int, float]
    return min(first, *prices.values())


if __name__ == "__main__":
    print(rename(1, "renamed"), total([1, 2]), asyncio.run(repriced(1)))
    print(restock(Catalog("eu"), 1), asyncio.run(stock_report(Catalog("eu"))))
