"""Loaders that see what is cached and say how to cache what they return (FusionCache's
adaptive caching and conditional refresh): ``with_context(loader)``.

A plain loader is ``loader(key)``. Wrapped by ``with_context``, it is called as
``loader(key, context)`` with a ``LoadContext``: the value cached now (due for a refresh,
or stale), and what it may set for the value it returns: its ``ttl`` and its ``tags``
(``core/tags.py``; the call's ``tags=`` until the loader sets others). Returning
``context.unchanged()``
says that the cached value is still current: it is kept, and extended in every layer
without being rewritten (in Redis, its deadlines are updated in place: the value does not
cross the network again). That is a conditional refresh: the loader asks its source
"changed since this version?" (an ETag, a ``version`` or ``updated_at`` column) instead of
loading the whole value.

Single-key loads only (``get_or_load``); a bulk loader is called as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .ttl import TTL

V = TypeVar("V")
R = TypeVar("R")


class LoadContext(Generic[V]):
    """What a loader wrapped by ``with_context`` gets besides its key.

    >>> @with_context
    ... def load_user(key: str, context: LoadContext[User]) -> User:
    ...     held = context.current
    ...     if held is not None and db.version_of(key) == held.version:
    ...         return context.unchanged()     # kept and extended; Redis is not rewritten
    ...     user = db.load_user(key)
    ...     context.ttl = 60 if user.active else 3600
    ...     return user
    >>> cache.get_or_load("user:1", load_user)
    """

    __slots__ = ("key", "current", "has_current", "ttl", "tags", "said_unchanged")

    def __init__(self, key: Any, current: V | None = None, has_current: bool = False) -> None:
        self.key = key
        self.current: V | None = current
        """The value cached now (due for a refresh, or stale), or ``None``."""
        self.has_current = has_current
        """Whether a value is cached (``current`` may be a cached ``None``)."""
        self.ttl: TTL | None = None
        """Set it: the TTL of the value returned, instead of the call's ``ttl`` (each layer
        caps it by its policy, and an adaptive layer scales it, as any requested TTL)."""
        self.tags: tuple[str, ...] = ()
        """Set it: the tags of the value returned (``invalidate_tags`` drops it), instead of
        the call's ``tags=``; a str or an iterable of them."""
        self.said_unchanged = False

    def unchanged(self) -> V:
        """Say that the cached value is still current, and return it (``return
        context.unchanged()``): it is kept and extended for a new TTL in every layer, and
        not rewritten in Redis. Raises ``LookupError`` when nothing is cached."""
        if not self.has_current:
            raise LookupError(
                f"nothing is cached for {self.key!r}: there is no value to keep unchanged "
                "(check context.has_current first)"
            )
        self.said_unchanged = True
        return self.current  # type: ignore[return-value]  # has_current: it is a V

    def __repr__(self) -> str:
        held = f"current={self.current!r}" if self.has_current else "nothing cached"
        return f"LoadContext({self.key!r}, {held})"


class ContextualLoader:
    """A loader called as ``function(key, context)`` (see ``with_context``). The managers
    pass it a ``LoadContext``; called with a key alone, it makes an empty one."""

    def __init__(self, function: Callable[[Any, LoadContext[Any]], Any]) -> None:
        if not callable(function):
            raise TypeError(f"with_context needs a function of (key, context), got {function!r}")
        self.function = function
        self.__wrapped__ = function
        self.__qualname__ = getattr(function, "__qualname__", type(function).__name__)

    def __call__(self, argument: Any) -> Any:
        if type(argument) is LoadContext:
            return self.function(argument.key, argument)
        return self.function(argument, LoadContext(argument))

    def __eq__(self, other: object) -> bool:  # the same load (fail-safe throttle, failures.py)
        return type(other) is ContextualLoader and other.function == self.function

    def __hash__(self) -> int:
        return hash(self.function)

    def __repr__(self) -> str:
        return f"with_context({self.function!r})"


class TaggedLoader:
    """A loader whose values are cached with ``tags`` (``get_or_load(..., tags=...)``): it
    is given a ``LoadContext`` carrying them, and passes its wrapped loader what it takes."""

    def __init__(self, loader: Callable[[Any], Any], tags: tuple[str, ...]) -> None:
        self.loader = loader
        self.tags = tags
        self.__wrapped__ = loader
        self.__qualname__ = getattr(loader, "__qualname__", type(loader).__name__)

    def __call__(self, argument: Any) -> Any:
        if type(argument) is LoadContext and type(self.loader) is not ContextualLoader:
            return self.loader(argument.key)
        return self.loader(argument)

    def __eq__(self, other: object) -> bool:  # the same load (fail-safe throttle, failures.py)
        return type(other) is TaggedLoader and (other.loader, other.tags) == (
            self.loader,
            self.tags,
        )

    def __hash__(self) -> int:
        return hash((self.loader, self.tags))

    def __repr__(self) -> str:
        return f"{self.loader!r} with tags {self.tags!r}"


def tagged(loader: Any, tags: tuple[str, ...]) -> Any:
    """``loader``, its values cached with ``tags`` (unchanged without tags)."""
    return TaggedLoader(loader, tags) if tags else loader


def with_context(function: Callable[[Any, LoadContext[Any]], R]) -> Callable[[Any], R]:
    """Make ``function(key, context)`` a loader for ``get_or_load`` that gets a
    ``LoadContext`` (a plain function, or an ``async def`` for ``AsyncMultilayerCache``);
    usable as a decorator."""
    return ContextualLoader(function)


__all__ = ["ContextualLoader", "LoadContext", "TaggedLoader", "tagged", "with_context"]
