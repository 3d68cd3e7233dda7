"""``@cache.cached``, one spec for the sync manager (plain functions, compiled ``CachedCall``)
and the asyncio one (coroutine functions), x the compiled and pure L1, over real Redis."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from multilayercache import AsyncMultilayerCache, InMemoryLayer, MultilayerCache


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    since: dt.date
    roles: tuple[str, ...]


def test_arguments_are_normalised_by_the_signature(harness, cache) -> None:
    calls = []

    @cache._target.cached(ttl=60)
    @harness.define
    def area(width: int, height: int = 2, *, unit: str = "m") -> str:
        calls.append((width, height, unit))
        return f"{width * height} {unit}2"

    for args, kwargs in [((3,), {}), ((), {"width": 3}), ((3, 2), {}), ((3,), {"unit": "m"})]:
        assert harness.call(area, *args, **kwargs) == "6 m2"
    assert calls == [(3, 2, "m")]
    assert harness.call(area, 3, unit="cm") == "6 cm2" and len(calls) == 2
    assert area.cache_key(3) == area.cache_key(width=3, height=2, unit="m")
    assert area.cache_key(3) != area.cache_key(3, unit="cm")
    with pytest.raises(TypeError, match="width"):
        harness.call(area)  # the error calling the function itself would raise


def test_invalidate_and_the_shared_key(harness, cache, layers) -> None:
    l1, l2 = layers
    calls = []

    @cache._target.cached()
    @harness.define
    def double(x: int) -> int:
        calls.append(x)
        return 2 * x

    assert harness.call(double, 21) == 42
    key = double.cache_key(21)
    assert str(key) == f"{__name__}.test_invalidate_and_the_shared_key.<locals>.double:[21]"
    assert l2.get(str(key)) == 42  # how another process finds it
    assert harness.call(double.invalidate, 21) is True
    assert harness.call(double, 21) == 42 and calls == [21, 21]
    assert double.__name__ == "double" and double.__wrapped__ is not None


def test_a_method_is_cached_without_its_instance_unless_asked(harness, cache) -> None:
    calls = []
    local = harness.cache([harness.l1()])  # an instance cannot be part of a shared key

    class Prices:
        def __init__(self, currency: str) -> None:
            self.currency = currency

        @cache._target.cached()
        @harness.define
        def price(self, item: str) -> str:
            calls.append((self.currency, item))
            return f"{item} in {self.currency}"

        @local._target.cached(include_self=True)
        @harness.define
        def own_price(self, item: str) -> str:
            calls.append(("own", self.currency, item))
            return f"{item} in {self.currency}"

    euro, dollar = Prices("EUR"), Prices("USD")
    assert harness.call(euro.price, "tea") == "tea in EUR"
    assert harness.call(dollar.price, "tea") == "tea in EUR"  # one key: the instance is left out
    assert harness.call(euro.own_price, "tea") == "tea in EUR"
    assert harness.call(dollar.own_price, "tea") == "tea in USD"
    assert len(calls) == 3

    shared = cache._target.cached(include_self=True)(harness.define(lambda self, item: item))
    with pytest.raises(TypeError, match="cannot build a shared cache key.*pass key="):
        harness.call(shared, euro, "tea")


def test_condition_keeps_some_results_out(harness, cache) -> None:
    calls = []

    @cache._target.cached(condition=lambda user: user is not None)
    @harness.define
    def find(user_id: int) -> str | None:
        calls.append(user_id)
        return None if user_id < 0 else f"user {user_id}"

    assert harness.call(find, -1) is None and harness.call(find, -1) is None
    assert harness.call(find, 1) == "user 1" and harness.call(find, 1) == "user 1"
    assert calls == [-1, -1, 1]


def test_key_templates_and_key_functions(harness, cache, layers) -> None:
    l1, l2 = layers

    @cache._target.cached(key="user:{user_id}")
    @harness.define
    def user(user_id: int, verbose: bool = False) -> str:
        return f"user {user_id}"

    @cache._target.cached(key=lambda item, **_: f"item:{item['id']}")
    @harness.define
    def describe(item: dict, lang: str = "en") -> str:
        return f"item {item['id']}"

    assert harness.call(user, 7) == "user 7" and l2.get("user:7") == "user 7"
    assert user.cache_key(user_id=7) == "user:7"
    assert harness.call(describe, {"id": 5}) == "item 5" and l2.get("item:5") == "item 5"
    with pytest.raises(ValueError, match="names 'nope'"):
        cache._target.cached(key="x:{nope}")(harness.define(lambda a: a))


def test_the_return_annotation_is_the_value_type_in_l2(harness, layers) -> None:
    l1, l2 = layers
    loads = []

    def service(cache):  # the same function, as each process of a service defines it
        @cache._target.cached()
        @harness.define
        def profile(name: str) -> Profile:
            loads.append(name)
            return Profile(name, dt.date(2024, 1, 2), ("admin",))

        return profile

    here = service(harness.cache([l1, l2]))
    elsewhere = service(harness.cache([harness.l1(), l2]))  # only L2 in common
    assert harness.call(here, "ada") == Profile("ada", dt.date(2024, 1, 2), ("admin",))
    found = harness.call(elsewhere, "ada")
    assert loads == ["ada"]
    assert found == Profile("ada", dt.date(2024, 1, 2), ("admin",)) and type(found.roles) is tuple


def test_unhashable_arguments_get_a_clear_error(harness, cache) -> None:
    @cache._target.cached()
    @harness.define
    def total(items: list) -> int:
        return sum(items)

    with pytest.raises(TypeError, match="must be hashable.*pass key="):
        harness.call(total, [1, 2])


def test_wrong_kind_of_function_is_refused() -> None:
    with pytest.raises(TypeError, match="coroutine function"):

        @MultilayerCache([InMemoryLayer(max_size=10)]).cached()
        async def not_here() -> int:
            return 1

    with pytest.raises(TypeError, match="not a coroutine function"):

        @AsyncMultilayerCache([InMemoryLayer(max_size=10)]).cached()
        def sync_function() -> int:
            return 1
