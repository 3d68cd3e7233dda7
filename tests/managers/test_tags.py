"""Tags and prefixes: an invalidation drops what it names from every layer of every
instance, by one write whatever the number of keys, and nothing it does not name."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from multilayercache import with_context
from multilayercache.core.loadcontext import LoadContext

from support import command_calls

USERS = {f"user:{n}:{field}": f"{field} of {n}" for n in range(3) for field in ("name", "mail")}


def eventually(check: Callable[[], bool], within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return check()


def twice(cache, keys) -> list:
    """Every key read twice: a value found in L2 is copied into L1 from its second read."""
    for _ in range(2):
        values = [cache.get(key) for key in keys]
    return values


@pytest.fixture
def fleet(harness):
    """Two instances on one L2, with a backplane."""
    a = harness.cache([harness.l1(), harness.l2()], backplane=True)
    b = harness.cache([harness.l1(), harness.l2()], backplane=True)
    return a, b


def tag_of(key: str) -> str:
    return key.rsplit(":", 1)[0]  # "user:1:name" -> "user:1"


def test_invalidate_tags_drops_every_tagged_value_from_every_instance(fleet, raw_redis, prefix):
    a, b = fleet
    for key, value in USERS.items():
        a.set(key, value, tags=tag_of(key))
    a.set("plain", 1)
    assert twice(b, [*USERS, "plain"]) == [*USERS.values(), 1]
    a.invalidate_tags("user:1")
    gone = [key for key in USERS if key.startswith("user:1:")]
    kept = [key for key in USERS if not key.startswith("user:1:")]
    assert [a.get(key) for key in gone] == [None, None]  # at once here
    assert eventually(lambda: [b.get(key) for key in gone] == [None, None])
    assert [b.get(key) for key in kept] == [USERS[key] for key in kept] and b.get("plain") == 1
    assert raw_redis.exists(*[prefix + key for key in gone]) == 2  # not deleted: not served
    a.set("user:1:name", "new", tags="user:1")  # written after the mark: served
    assert eventually(lambda: b.get("user:1:name") == "new")


def test_invalidate_prefix_drops_every_key_under_it(fleet):
    a, b = fleet
    a.set_many(USERS)
    assert twice(b, list(USERS)) == list(USERS.values())
    b.invalidate_prefix("user:2:")
    assert [b.get(key) is None for key in USERS] == [key.startswith("user:2:") for key in USERS]
    assert eventually(lambda: a.get("user:2:mail") is None)
    assert a.get("user:0:mail") == USERS["user:0:mail"]


def test_an_instance_started_later_reads_the_marks(harness, fleet):
    a, _ = fleet
    a.set("user:0:name", "ann", tags="user:0")
    a.set("user:1:name", "bob")
    a.invalidate_tags("user:0")
    a.invalidate_prefix("user:1:")
    late = harness.cache([harness.l1(), harness.l2()])  # no backplane: the marks are in L2
    assert late.get("user:0:name") is None and late.get("user:1:name") is None


def test_fields_of_the_marks_that_the_cache_did_not_write_are_ignored(harness, raw_redis, prefix):
    """Nothing read from Redis is trusted: a field that is not UTF-8 (no tag or prefix is
    named by it) raised UnicodeDecodeError from every read that reached Redis."""
    writer = harness.cache([harness.l1(), harness.l2()])
    writer.set("user:0:name", "ann", tags="user:0")
    writer.set("user:1:name", "bob", tags="user:1")
    writer.invalidate_tags("user:1")
    marks = f"{prefix}__mlc:marks"
    raw_redis.hset(marks, mapping={b"\xff\xfe": b"1", b"t:user:0": b"not a time"})
    late = harness.cache([harness.l1(), harness.l2()])
    assert late.get("user:0:name") == "ann" and late.get("user:1:name") is None
    assert late.get_many(["user:0:name", "user:1:name"]) == {"user:0:name": "ann"}


def test_an_invalidation_of_nothing_does_nothing(harness, fleet):
    """``invalidate_tags(*tags)`` with no tags (an empty list unpacked) raised redis-py's
    DataError ("'hset' with no key value pairs")."""
    a, _ = fleet
    a.set("user:0:name", "ann", tags="user:0")
    a.invalidate_tags(*[])
    a.invalidate_prefix(*())
    assert a.get("user:0:name") == "ann"


def test_a_value_written_after_an_invalidation_of_its_tag_is_served_everywhere(harness, fleet):
    """Entries say when they were written to the millisecond, and one of the mark's own
    millisecond counts as invalidated: a set right after ``invalidate_tags`` of its tag was
    a miss in every other instance (most of these 100, before: 80-90%)."""
    a, _ = fleet
    for n in range(100):
        a.invalidate_tags(f"tag:{n}")
        a.set(f"user:{n}:name", n, tags=f"tag:{n}")
    late = harness.cache([harness.l1(), harness.l2()])
    keys = [f"user:{n}:name" for n in range(100)]
    assert late.get_many(keys) == {key: n for n, key in enumerate(keys)}


def test_loads_carry_their_tags(harness, fleet):
    a, b = fleet
    assert a.get_or_load("k1", harness.loader(lambda key: "one"), tags="group") == "one"
    many = a.get_or_load_many(
        ["k2", "k3"], harness.loader(lambda keys: {key: key for key in keys}), tags=["group"]
    )
    assert many == {"k2": "k2", "k3": "k3"}

    @with_context
    def chooses_its_tags(key: str, context: LoadContext) -> str:
        context.tags = ("group", "other")
        return "four"

    loader = chooses_its_tags
    if harness.is_async:

        @with_context
        async def chooses_its_tags_async(key: str, context: LoadContext) -> str:
            context.tags = "group"
            return "four"

        loader = chooses_its_tags_async
    assert a.get_or_load("k4", loader) == "four"
    assert twice(b, ["k1", "k2", "k3", "k4"]) == ["one", "k2", "k3", "four"]
    b.invalidate_tags("group")
    assert [b.get(key) for key in ("k1", "k2", "k3", "k4")] == [None] * 4
    assert eventually(lambda: [a.get(key) for key in ("k1", "k2", "k3", "k4")] == [None] * 4)


def test_cached_functions_take_tags_from_their_arguments(harness, fleet):
    a, b = fleet
    calls: list[int] = []

    def price(product_id: int) -> int:
        calls.append(product_id)
        return product_id * 10

    cached_a = a.cached(tags=lambda product_id: f"product:{product_id}")(harness.define(price))
    assert harness.call(cached_a, 1) == 10 and harness.call(cached_a, 2) == 20
    assert harness.call(cached_a, 1) == 10 and calls == [1, 2]
    a.invalidate_tags("product:1")
    assert harness.call(cached_a, 1) == 10 and harness.call(cached_a, 2) == 20
    assert calls == [1, 2, 1]


def test_an_invalidation_is_one_write_whatever_the_number_of_keys(harness, raw_redis):
    cache = harness.cache([harness.l1(max_size=100), harness.l2()])
    for count in (10, 2_000):
        tag = f"tag-{count}"
        cache.set_many({f"{tag}:{n}": n for n in range(count)}, tags=tag)
        before = {
            name: command_calls(raw_redis, name) for name in ("hset", "scan", "del", "unlink")
        }
        cache.invalidate_tags(tag)
        after = {name: command_calls(raw_redis, name) for name in before}
        assert {name: after[name] - before[name] for name in before} == {
            "hset": 1, "scan": 0, "del": 0, "unlink": 0,
        }  # fmt: skip
        assert cache.get_many([f"{tag}:{n}" for n in range(0, count, 97)]) == {}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda cache: cache.set("k", 1, tags=[""]), "non-empty str"),
        (lambda cache: cache.set("k", 1, tags=[1]), "non-empty str"),
        (lambda cache: cache.set("k", 1, tags=5), "iterable of str"),
        (lambda cache: cache.invalidate_tags("a", 3), "non-empty str"),
        (lambda cache: cache.invalidate_prefix(""), "each prefix must be a non-empty str"),
        (lambda cache: cache.set("k", 1, tags="x" * 300), "at most 255 bytes"),
    ],
)
def test_bad_tags_are_refused_clearly(harness, call, message):
    cache = harness.cache([harness.l1(), harness.l2()])
    with pytest.raises((TypeError, ValueError), match=message):
        call(cache)
    assert cache.get("k") is None  # nothing was written
