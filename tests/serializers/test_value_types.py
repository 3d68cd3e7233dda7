"""Values keep their type in every layer: with a declared ``value_type``, what a read from
L2 (Redis, through MessagePack) returns equals, and has the type of, what L1 returns (the
object itself). A property test per supported type, on a real server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import itertools
import uuid
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multilayercache import InMemoryLayer, MultilayerCache, RedisLayer, SerializationError

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
INT64 = st.integers(-(2**63), 2**64 - 1)


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: int
    label: str
    tags: tuple[str, ...]
    at: dt.date


class Order(msgspec.Struct):
    id: uuid.UUID
    total: Decimal
    items: list[tuple[str, int]]


def same(a: Any, b: Any) -> bool:
    """Equal, with the same type at every level of nesting."""
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (set, frozenset)):
        return a == b and all(type(x) is type(next(y for y in b if y == x)) for x in a)
    if dataclasses.is_dataclass(a):
        return same(dataclasses.asdict(a), dataclasses.asdict(b))
    return a == b


aware = st.datetimes(timezones=st.just(dt.UTC))
CASES: dict[str, tuple[Any, st.SearchStrategy]] = {
    "tuple": (tuple[int, str], st.tuples(INT64, st.text())),
    "set": (set[int], st.sets(INT64, max_size=5)),
    "frozenset": (frozenset[str], st.frozensets(st.text(max_size=5), max_size=5)),
    "naive datetime": (dt.datetime, st.datetimes()),
    "aware datetime": (dt.datetime, aware),
    "date": (dt.date, st.dates()),
    "time": (dt.time, st.times()),
    "timedelta": (dt.timedelta, st.timedeltas(min_value=dt.timedelta(days=-999))),
    "Decimal": (Decimal, st.decimals(allow_nan=False, allow_infinity=False)),
    "UUID": (uuid.UUID, st.uuids()),
    "enum": (Color, st.sampled_from(Color)),
    "int enum": (Level, st.sampled_from(Level)),
    "dataclass": (
        Point,
        st.builds(Point, INT64, st.text(), st.tuples(st.text()), st.dates()),
    ),
    "msgspec Struct": (
        Order,
        st.builds(
            Order,
            st.uuids(),
            st.decimals(allow_nan=False, allow_infinity=False),
            st.lists(st.tuples(st.text(), INT64), max_size=3),
        ),
    ),
    "nested": (
        dict[str, list[tuple[dt.date, set[int]]]],
        st.dictionaries(
            st.text(max_size=4),
            st.lists(st.tuples(st.dates(), st.sets(INT64, max_size=3)), max_size=3),
            max_size=3,
        ),
    ),
    "optional": (int | None, st.none() | INT64),
    "bytes": (bytes, st.binary()),
    "float": (float, st.floats(allow_nan=False)),
}

try:
    import pydantic

    class User(pydantic.BaseModel):
        name: str
        joined: dt.datetime
        roles: tuple[str, ...]
        balance: Decimal

    CASES["pydantic model"] = (
        User,
        st.builds(
            User,
            name=st.text(),
            joined=aware,
            roles=st.tuples(st.text()),
            balance=st.decimals(allow_nan=False, allow_infinity=False, places=2),
        ),
    )
except ImportError:  # pydantic is optional: the test extra installs it
    pass

_keys = itertools.count()


@pytest.fixture
def l2(redis_url, prefix):
    layer = RedisLayer(redis_url, prefix=prefix)
    yield layer
    layer.close()


@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_a_value_read_from_l2_equals_and_has_the_type_of_the_one_from_l1(l2, case) -> None:
    value_type, values = CASES[case]
    cache = MultilayerCache([InMemoryLayer(max_size=1_000), l2], value_type=value_type)

    @SETTINGS
    @given(value=values)
    def check(value: Any) -> None:
        key = f"value-{next(_keys)}"
        cache.set(key, value)
        from_l1 = cache.layers[0].get(key)
        from_l2 = l2.get(key, value_type=value_type)
        assert from_l1 is value
        assert same(from_l2, from_l1), (from_l2, from_l1)
        # ... and through a manager on another instance, which only has L2 to ask:
        other = MultilayerCache([InMemoryLayer(max_size=10), l2], value_type=value_type)
        assert same(other.get(key), value)

    check()


def test_without_a_declared_type_the_data_model_is_messagepack(l2) -> None:
    cache = MultilayerCache([l2])
    point = Point(1, "a", ("t",), dt.date(2024, 1, 2))
    cache.set("k", {"tuple": (1, 2), "set": {3}, "point": point, "id": uuid.UUID(int=5)})
    assert cache.get("k") == {
        "tuple": [1, 2],
        "set": [3],
        "point": {"x": 1, "label": "a", "tags": ["t"], "at": "2024-01-02"},
        "id": "00000000-0000-0000-0000-000000000005",
    }


def test_a_pydantic_model_without_a_declared_type_is_stored_as_its_fields(l2) -> None:
    pydantic = pytest.importorskip("pydantic")

    class Order(pydantic.BaseModel):
        id: int
        at: dt.datetime
        total: Decimal

    order = Order(id=7, at=dt.datetime(2024, 1, 2, tzinfo=dt.UTC), total=Decimal("9.90"))
    cache = MultilayerCache([InMemoryLayer(max_size=10), l2])
    cache.set("order", order)  # as a dataclass would be: no value_type needed
    assert cache.get("order") is order  # L1 holds the model itself
    assert MultilayerCache([l2]).get("order") == {
        "id": 7,
        "at": "2024-01-02T00:00:00Z",
        "total": "9.90",
    }
    typed = MultilayerCache([l2], value_type=Order)
    assert typed.get("order") == order  # declared: the model again


def test_get_or_load_takes_its_own_value_type(l2) -> None:
    cache = MultilayerCache([InMemoryLayer(max_size=10), l2])
    assert cache.get_or_load("k", lambda key: (1, "a"), value_type=tuple[int, str]) == (1, "a")
    other = MultilayerCache([l2])
    assert other.get_or_load("k", lambda key: None, value_type=tuple[int, str]) == (1, "a")
    many = other.get_or_load_many(["k"], lambda keys: {}, value_type=tuple[int, str])
    assert many == {"k": (1, "a")} and type(many["k"]) is tuple


def test_a_stored_value_of_another_type_reads_as_a_miss(l2) -> None:
    MultilayerCache([l2]).set("k", "not a date")
    cache = MultilayerCache([l2], value_type=dt.date)
    assert cache.get("k", "dflt") == "dflt"
    assert l2.stats().errors >= 1
    assert cache.get_or_load("k", lambda key: dt.date(2024, 1, 1)) == dt.date(2024, 1, 1)


@pytest.mark.parametrize("big", [2**64, -(2**63) - 1, 10**30])
def test_ints_beyond_64_bits_fail_clearly_and_write_nothing(l2, big) -> None:
    cache = MultilayerCache([InMemoryLayer(max_size=10), l2])
    with pytest.raises(SerializationError, match="beyond 64 bits"):
        cache.set("big", {"n": [big]})
    assert "big" not in cache.layers[0] and l2.get("big") is None


async def test_the_asyncio_layer_decodes_by_type_too(redis_url, prefix) -> None:
    from multilayercache import AsyncMultilayerCache, AsyncRedisLayer

    l2 = AsyncRedisLayer(redis_url, prefix=prefix)
    cache = AsyncMultilayerCache([InMemoryLayer(max_size=10), l2], value_type=Point)
    point = Point(1, "a", ("t",), dt.date(2024, 1, 2))
    await cache.set("p", point)
    assert same(await l2.get("p", value_type=Point), point)
    assert same(await AsyncMultilayerCache([l2], value_type=Point).get("p"), point)
    assert same(await l2.get_many(["p"], value_type=Point), {"p": point})
    await l2.close()
