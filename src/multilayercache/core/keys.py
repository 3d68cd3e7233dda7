"""Keys the manager builds or checks: the decorator's keys and batches of keys."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec


def unique(keys: Iterable[Any]) -> list[Any]:
    """Keys in first-seen order, without repeats."""
    try:
        return list(dict.fromkeys(keys))
    except TypeError:
        raise TypeError("cache keys must be hashable") from None


def function_key(function: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> str:
    """A key for one call of ``function``: stable across processes (so L2 can share it).

    Built from the function's qualified name and a canonical JSON of the arguments; arguments
    JSON cannot represent need an explicit ``key=`` function.
    """
    try:
        arguments = msgspec.json.encode([list(args), sorted(kwargs.items())])
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"cannot build a cache key for {function.__qualname__} from its arguments "
            f"({error}); pass key=lambda *args, **kwargs: ... to cached()"
        ) from None
    return f"{function.__module__}.{function.__qualname__}:{arguments.decode()}"


def key_maker(function: Callable[..., Any], key: Callable[..., Any] | None) -> Callable[..., Any]:
    """The decorator's key for a call: ``key(*args, **kwargs)`` if given, else
    ``function_key``."""
    if key is not None:
        return key
    return lambda *args, **kwargs: function_key(function, args, kwargs)
