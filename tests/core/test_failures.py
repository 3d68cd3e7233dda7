"""The failure a caller without a stale value gets while its key is held off
(``core/failures.py``): a copy of the loader's exception, raised from the original, for the
same load only."""

from __future__ import annotations

import functools
import traceback

import pytest

from multilayercache import ThrottledLoadError
from multilayercache.core.failures import FailedLoad, replay, same_load


def load_user(key: str) -> str:
    raise ConnectionError("database down")


class Repository:
    def load(self, key: str) -> str:
        raise ConnectionError("database down")


def test_the_same_load_is_recognised_however_it_is_passed() -> None:
    repository = Repository()
    assert same_load(load_user, load_user)
    assert same_load(repository.load, repository.load)  # a new bound method each time
    assert not same_load(repository.load, Repository().load)

    def site(user_id: int) -> object:
        return lambda key: user_id  # a lambda made anew at each call from one place

    assert same_load(site(7), site(7))
    assert not same_load(site(7), site(8))
    assert not same_load(load_user, lambda key: "recovered")
    assert not same_load(functools.partial(load_user), functools.partial(load_user))


def test_captured_values_that_cannot_be_compared_mean_another_load() -> None:
    class Incomparable:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no")

        __hash__ = object.__hash__

    def site() -> object:
        captured = Incomparable()
        return lambda key: captured

    assert not same_load(site(), site())


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_the_replay_is_a_copy_of_the_same_type_raised_from_the_original() -> None:
    original = raised(ConnectionError("database down"))
    original.add_note("from the loader")
    failure = FailedLoad(original, load_user)
    tracebacks = []
    for _ in range(3):
        again = replay(failure, "user:1", 4.2)
        with pytest.raises(ConnectionError, match="^database down\n") as caught:
            raise again from failure.error
        assert caught.value is not original and caught.value.__cause__ is original
        assert caught.value.__notes__[0] == "from the loader"
        assert "not loaded again for 4.2 s more" in caught.value.__notes__[1]
        tracebacks.append(len(traceback.extract_tb(caught.value.__traceback__)))
    assert tracebacks[0] == tracebacks[1] == tracebacks[2]  # nothing grows
    assert original.__notes__ == ["from the loader"]  # the original is left as it was


def test_an_exception_with_its_own_constructor_is_copied_too() -> None:
    class QueryError(Exception):
        def __init__(self, query: str, code: int) -> None:
            super().__init__(f"{query} failed with {code}")
            self.code = code

    again = replay(FailedLoad(raised(QueryError("SELECT 1", 7)), load_user), "k", 1.0)
    assert type(again) is QueryError and str(again) == "SELECT 1 failed with 7"
    assert again.code == 7  # type: ignore[attr-defined]


def test_an_exception_that_cannot_be_rebuilt_is_reported_by_a_documented_type() -> None:
    class Unbuildable(Exception):
        def __new__(cls, *args: object) -> Unbuildable:
            if args:
                raise TypeError("built without arguments only")
            return super().__new__(cls)

    original = raised(Unbuildable())
    original.args = ("gone",)
    again = replay(FailedLoad(original, load_user), "k", 1.0)
    assert isinstance(again, ThrottledLoadError)
    assert "fail_safe_throttle" in str(again) and "Unbuildable: gone" in str(again)
