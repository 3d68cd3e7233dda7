"""What ``mypy --strict`` must reject: the decorated functions and methods keep their
signatures (``self`` / ``cls`` bound), and so do their ``invalidate`` and ``cache_key``;
``get_or_load`` returns its loader's type, and passes it the key."""

from __future__ import annotations

from multilayercache import AsyncMultilayerCache, InMemoryLayer, MultilayerCache

cache = MultilayerCache([InMemoryLayer(max_size=10)])
acache = AsyncMultilayerCache([InMemoryLayer(max_size=10)])


@cache.cached()
def square(x: int) -> int:
    return x * x


square("three")  # wrong argument type
square.invalidate(1, 2)  # too many arguments
text: str = square(3)  # wrong result type


def size_of(key: str) -> int:
    return len(key)


size: str = cache.get_or_load("tea", size_of)  # the loader's result is an int
cache.get_or_load(3, size_of)  # a key the loader does not take


class Shop:
    @cache.cached()
    def price(self, item: str) -> float:
        return 1.0

    @cache.cached()
    @classmethod
    def opening(cls, day: int) -> str:
        return "9:00"

    @cache.cached()
    @staticmethod
    def vat(country: str) -> float:
        return 0.2

    @acache.cached()
    async def stock(self, item: str) -> int:
        return 1


async def wrong_calls(shop: Shop) -> None:
    shop.price(1)  # wrong argument type, self bound
    shop.price.invalidate(shop, "tea")  # self passed again
    Shop.price("tea")  # unbound without the instance
    Shop.opening.cache_key("monday")  # wrong argument type, cls bound
    Shop.vat.invalidate("fr", "de")  # too many arguments
    count: str = await shop.stock("tea")  # wrong result type
    await shop.stock.invalidate()  # missing argument
    print(count)
