"""``@cache.cached``, one spec for the sync manager (plain functions, ``CachedCall``) and the
asyncio one (coroutine functions, ``AsyncCachedCall``), x the compiled and pure twins (the
L1, the cached calls and the method bindings), over real Redis."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import inspect
import math
import uuid
import weakref

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import multilayercache.aio.cache
import multilayercache.core.decorate
import multilayercache.sync.cache
from multilayercache import AsyncMultilayerCache, InMemoryLayer, MultilayerCache


@pytest.fixture(autouse=True)
def decorator_twins(impl, monkeypatch) -> None:
    # The managers pick their twins at import; the spec runs on both.
    monkeypatch.setattr(multilayercache.sync.cache, "CachedCall", impl.CachedCall)
    monkeypatch.setattr(multilayercache.aio.cache, "AsyncCachedCall", impl.AsyncCachedCall)
    monkeypatch.setattr(multilayercache.core.decorate, "CachedMethod", impl.CachedMethod)
    monkeypatch.setattr(multilayercache.core.decorate, "CachedClassMethod", impl.CachedClassMethod)


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


class Color(enum.Enum):
    RED = 1


# Arguments L1 tells apart that had one text in Redis: JSON writes nan / inf / -inf as null,
# a date, bytes or UUID as a str, a plain Enum as its value, a frozenset as a list.
SHARED_A_TEXT = [
    (math.inf, -math.inf), (None, math.nan), ("2020-01-01", dt.date(2020, 1, 1)),
    ("eA==", b"x"), (1, Color.RED), ((1,), frozenset({1})),
    ("12345678-1234-5678-1234-567812345678", uuid.UUID("12345678-1234-5678-1234-567812345678")),
]  # fmt: skip


def test_arguments_that_differ_have_different_shared_keys(harness) -> None:
    """Another process (here: another instance, L1 empty) calling ``f(b)`` got ``f(a)``'s
    result from Redis, without calling ``f``."""
    first = harness.cache([harness.l1(), harness.l2()])
    second = harness.cache([harness.l1(), harness.l2()])

    def describe(x: object) -> str:
        return f"computed for {x!r}"

    describe_first = first._target.cached()(harness.define(describe))
    describe_second = second._target.cached()(harness.define(describe))
    for a, b in SHARED_A_TEXT:
        assert harness.call(describe_first, a) == f"computed for {a!r}"
        assert harness.call(describe_second, b) == f"computed for {b!r}"
    words = frozenset(f"word{n}" for n in range(20))
    assert str(describe_first.cache_key(words)).endswith(
        ":[{" + '"builtins.frozenset":[' + ",".join(f'"{w}"' for w in sorted(words)) + "]}]"
    )  # the same in every process, whatever order its str hashes give the set


# Few values, among them the JSON look-alikes of one another (NaN left out: it is not equal
# to itself; SHARED_A_TEXT has it), so that draws meet often.
UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")
SCALARS = st.sampled_from([
    None, False, True, 0, 1, 2.5, math.inf, -math.inf, "", "1", "eA==", "2020-01-01", str(UUID),
    b"", b"x", dt.date(2020, 1, 1), UUID, Color.RED, decimal.Decimal("2.5"), decimal.Decimal("1"),
])  # fmt: skip
ARGUMENTS = st.recursive(
    SCALARS, lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=6
)


@settings(max_examples=300, deadline=None)
@given(ARGUMENTS, ARGUMENTS)
def test_one_shared_text_is_one_argument(a: object, b: object) -> None:
    """Property: two arguments with one text in Redis are equal (one L1 key)."""
    token = multilayercache.core.decorate.FunctionToken(test_one_shared_text_is_one_argument)
    assume(a != b)
    assert token.text_for((a,)) != token.text_for((b,))


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


class Prices:
    """A service whose results depend on its state (its currency)."""

    calls: list = []

    def __init__(self, currency: str) -> None:
        self.currency = currency

    def __cache_key__(self) -> str:
        return self.currency  # instances with one currency share results


def prices_service(harness, cache, calls):
    class Service(Prices):
        @cache._target.cached()
        @harness.define
        def price(self, item: str, count: int = 1) -> str:
            calls.append((self.currency, item, count))
            return f"{count} {item} in {self.currency}"

    return Service


def test_a_method_binds_its_instance_which_is_part_of_the_key(harness, cache, layers) -> None:
    l1, l2 = layers
    calls = []
    Service = prices_service(harness, cache, calls)
    euro, dollar, other_euro = Service("EUR"), Service("USD"), Service("EUR")

    assert harness.call(euro.price, "tea") == "1 tea in EUR"
    assert harness.call(dollar.price, "tea") == "1 tea in USD"  # not the euro's result
    assert harness.call(other_euro.price, "tea", count=1) == "1 tea in EUR"  # __cache_key__
    assert harness.call(Service.price, euro, "tea") == "1 tea in EUR"  # unbound: one key
    assert calls == [("EUR", "tea", 1), ("USD", "tea", 1)]

    key = euro.price.cache_key("tea")
    assert key == Service.price.cache_key(euro, item="tea") == other_euro.price.cache_key("tea", 1)
    assert key != dollar.price.cache_key("tea")
    assert str(key) == f'{Service.price.__module__}.{Service.price.__qualname__}:["EUR","tea",1]'
    assert l2.get(str(key)) == "1 tea in EUR"  # how another process finds it

    assert harness.call(euro.price.invalidate, "tea") is True  # bound: no instance passed
    assert harness.call(other_euro.price.invalidate, "tea") is False
    assert harness.call(dollar.price, "tea") == "1 tea in USD" and len(calls) == 2
    assert harness.call(euro.price, "tea") == "1 tea in EUR" and len(calls) == 3
    with pytest.raises(TypeError, match="item"):
        harness.call(euro.price)  # the error calling the method itself would raise


def test_a_bound_cached_method_looks_like_a_bound_method(harness, cache) -> None:
    Service = prices_service(harness, cache, [])
    euro = Service("EUR")
    bound = euro.price
    assert bound.__self__ is euro and bound.__func__ is Service.__dict__["price"]
    assert bound.__name__ == "price" and bound.__qualname__.endswith("Service.price")
    assert bound == euro.price and hash(bound) == hash(euro.price) and bound != Service("EUR").price
    assert list(inspect.signature(bound).parameters) == ["item", "count"]
    assert list(inspect.signature(Service.price).parameters) == ["self", "item", "count"]
    assert weakref.WeakMethod(bound)() == bound  # signal libraries keep methods this way
    assert "Service.price" in repr(bound)

    class Discounted(Service):  # an override reaching the cached method through super()
        def price(self, item: str, count: int = 1) -> str:
            return super().price(item, count)

    assert harness.call(Discounted("GBP").price, "tea") == "1 tea in GBP"


def test_an_instance_without_a_shared_text_is_refused_by_a_shared_layer(harness, cache) -> None:
    calls = []
    local = harness.cache([harness.l1()])  # only this process: identity is enough

    class Session:  # no __cache_key__, a plain class: keyed by identity
        def __init__(self, user: str) -> None:
            self.user = user

        @local._target.cached()
        @harness.define
        def greeting(self, hour: int) -> str:
            calls.append((self.user, hour))
            return f"good {'morning' if hour < 12 else 'day'}, {self.user}"

        @cache._target.cached()
        @harness.define
        def shared_greeting(self, hour: int) -> str:
            calls.append(("shared", self.user, hour))
            return f"hello {self.user}"

    ada, bob = Session("ada"), Session("bob")
    assert harness.call(ada.greeting, 9) == "good morning, ada"
    assert harness.call(bob.greeting, 9) == "good morning, bob"
    assert harness.call(ada.greeting, 9) == "good morning, ada" and len(calls) == 2
    assert "Session" in str(ada.greeting.cache_key(9))  # printable without a shared text

    with pytest.raises(TypeError, match=r"Session instance has no text.*__cache_key__"):
        harness.call(ada.shared_greeting, 9)
    assert ("shared", "ada", 9) not in calls  # refused before loading: nothing cached

    @dataclasses.dataclass  # eq=True without frozen: unhashable
    class Mutable:
        user: str

        @local._target.cached()
        @harness.define
        def greeting(self, hour: int) -> str:
            return self.user

    with pytest.raises(TypeError, match=r"Mutable is unhashable.*__cache_key__.*include_self"):
        harness.call(Mutable("ada").greeting, 9)


def test_a_frozen_dataclass_instance_is_keyed_by_its_fields(harness, layers) -> None:
    l1, l2 = layers
    loads = []

    def service(cache):  # the same class, as each process of a service defines it
        @dataclasses.dataclass(frozen=True)
        class Region:
            name: str
            vat: int

            @cache._target.cached()
            @harness.define
            def gross(self, net: int) -> int:
                loads.append((self.name, net))
                return net * (100 + self.vat) // 100

        return Region

    Here, Elsewhere = service(harness.cache([l1, l2])), service(harness.cache([harness.l1(), l2]))
    assert harness.call(Here("fr", 20).gross, 100) == 120
    assert harness.call(Here("fr", 20).gross, 100) == 120  # an equal instance: shared
    assert harness.call(Here("de", 19).gross, 100) == 119
    assert harness.call(Elsewhere("fr", 20).gross, 100) == 120  # found in L2
    assert loads == [("fr", 100), ("de", 100)]


def test_include_self_false_leaves_the_instance_out(harness, cache) -> None:
    calls = []

    class Catalog:
        def __init__(self, name: str) -> None:
            self.name = name

        @cache._target.cached(include_self=False)  # results do not depend on the instance
        @harness.define
        def title(self, isbn: str) -> str:
            calls.append((self.name, isbn))
            return f"title of {isbn}"

    first, second = Catalog("a"), Catalog("b")
    assert harness.call(first.title, "42") == harness.call(second.title, "42") == "title of 42"
    assert calls == [("a", "42")] and str(first.title.cache_key("42")).endswith('title:["42"]')
    assert harness.call(second.title.invalidate, "42") is True

    with pytest.raises(TypeError, match="has no self or cls parameter"):
        cache._target.cached(include_self=False)(harness.define(lambda item: item))
    with pytest.raises(TypeError, match="include_self=False applies to the default key"):
        cache._target.cached(include_self=False, key="t:{isbn}")(
            harness.define(lambda self, isbn: isbn)
        )


def test_class_methods_and_static_methods(harness, cache, layers) -> None:
    l1, l2 = layers
    calls = []

    class Currency:
        rate = 1

        @cache._target.cached()
        @classmethod
        @harness.define
        def convert(cls, amount: int) -> int:
            calls.append((cls.__name__, amount))
            return amount * cls.rate

        @cache._target.cached()
        @staticmethod
        @harness.define
        def rounded(amount: float) -> int:
            calls.append(("rounded", amount))
            return round(amount)

        @staticmethod  # the other order works too: staticmethod hands the cached function
        @cache._target.cached()
        @harness.define
        def halved(amount: int) -> int:
            calls.append(("halved", amount))
            return amount // 2

    class Pound(Currency):
        rate = 2

    assert harness.call(Currency.convert, 10) == 10
    assert harness.call(Currency().convert, 10) == 10  # through an instance: its class
    assert harness.call(Pound.convert, 10) == 20  # another class: another key
    assert calls == [("Currency", 10), ("Pound", 10)]
    key = Currency.convert.cache_key(10)
    assert str(key).endswith(f'convert:["{Currency.__module__}.{Currency.__qualname__}",10]')
    assert l2.get(str(key)) == 10
    assert key == Currency().convert.cache_key(amount=10) != Pound.convert.cache_key(10)
    assert harness.call(Currency.convert.invalidate, 10) is True
    assert harness.call(Currency.convert, 10) == 10 and len(calls) == 3

    assert harness.call(Currency.rounded, 2.6) == harness.call(Currency().rounded, 2.6) == 3
    assert harness.call(Pound.rounded.invalidate, 2.6) is True
    assert str(Currency.rounded.cache_key(2.6)).endswith("rounded:[2.6]")
    assert harness.call(Currency.halved, 8) == harness.call(Pound().halved, 8) == 4
    assert harness.call(Currency.halved.invalidate, 8) is True
    assert calls[3:] == [("rounded", 2.6), ("halved", 8)]


def test_key_templates_may_name_the_instance(harness, cache, layers) -> None:
    l1, l2 = layers

    class Shop:
        def __init__(self, currency: str) -> None:
            self.currency = currency

        @cache._target.cached(key="price:{self.currency}:{item}")
        @harness.define
        def price(self, item: str) -> str:
            return f"{item} in {self.currency}"

    assert harness.call(Shop("EUR").price, "tea") == "tea in EUR"
    assert l2.get("price:EUR:tea") == "tea in EUR" and Shop("EUR").price.cache_key("tea") == (
        "price:EUR:tea"
    )
    assert harness.call(Shop("EUR").price.invalidate, "tea") is True


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
