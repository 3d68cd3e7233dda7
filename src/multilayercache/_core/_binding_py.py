"""How a cached function defined in a class binds to its instance or class (pure-Python twin
of ``binding.pyx``).

A plain function in a class body is a descriptor: ``obj.method`` is a bound method, whose
calls pass ``obj`` first. A cached function needs more: ``obj.method.invalidate(1)`` and
``obj.method.cache_key(1)`` must pass ``obj`` first too, which a ``types.MethodType`` cannot
do (its other attributes are the function's, unbound). So ``@cache.cached`` wraps the cached
function ``call`` of a method (which takes the instance first, as do its ``invalidate`` and
``cache_key``):

* ``CachedMethod(call)``, for a method: ``obj.method`` is a ``BoundCall`` of ``obj``;
  ``Cls.method`` is the ``CachedMethod`` itself, called with the instance first.
* ``CachedClassMethod(call)``, for a class method: ``Cls.method`` and ``obj.method`` are
  ``BoundCall``\\ s of the class. (A static method needs no binding: ``staticmethod(call)``.)
* ``BoundCall(method, instance)``: calls, ``invalidate`` and ``cache_key`` pass
  ``instance`` first. ``__func__`` and ``__self__`` are those of a bound method (so
  ``weakref.WeakMethod`` works), other attributes (``__name__``, ``__wrapped__``) the
  method's, and ``__signature__`` the method's without its first parameter.

Speed: the compiled ``CachedMethod`` is a *method descriptor* (the type flag CPython gives
functions), so ``obj.method(1)`` calls it with ``obj`` first without making a ``BoundCall``,
exactly as ``obj.function(1)`` makes no bound method; only ``obj.method`` as a value
(``obj.method.invalidate``) makes one. A cached method's hit then costs what a cached
function's does, plus the instance in its key. A ``DirectCall`` (the sync manager's
``CachedCall``) has a C entry, ``call(args, kwargs)``, that the compiled bindings call
instead of going through the interpreter's call protocol a second time.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any


class DirectCall:
    """A callable with an entry ``call(args, kwargs)`` that the bindings may call directly
    (in the compiled twin, a C function)."""

    def call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(args, kwargs)


class KeyedCall(DirectCall):
    """What the sync and asyncio cached calls (``CachedCall``, ``AsyncCachedCall``) hold:
    ``key_of(args, kwargs)``, the call's key, the first layer's ``first_lookup``, the
    ``load`` of a miss, and the markers that lookup answers with (``missing``, ``aside``).
    Each subclass says what a call does with them."""

    def __init__(
        self,
        key_of: Callable[[tuple[Any, ...], dict[str, Any] | None], Any],
        first_lookup: Callable[[Any, Any, Any], Any],
        load: Callable[[Any, tuple[Any, ...], dict[str, Any], bool], Any],
        missing: Any,
        aside: Any,
    ) -> None:
        self._key_of = key_of
        self._first_lookup = first_lookup
        self._load = load
        self._missing = missing
        self._aside = aside


class _Binding:
    """What ``CachedMethod`` and ``CachedClassMethod`` share: the cached function ``call``,
    called unbound with the instance (or class) first. ``functools.update_wrapper`` gives
    them the function's name and docstring."""

    def __init__(self, call: Callable[..., Any]) -> None:
        if not callable(call):
            raise TypeError(f"{type(self).__name__} wraps a cached function, got {call!r}")
        self._call = call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    # ``cached()`` gave the call its ``invalidate`` and ``cache_key`` (attributes of a
    # function, in the asyncio manager): mypy sees only a callable, hence the ignores.

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Forget the cached result of this call (the instance or class first)."""
        return self._call.invalidate(*args, **kwargs)  # type: ignore[attr-defined]

    def cache_key(self, *args: Any, **kwargs: Any) -> Any:
        """The key this call is cached under (the instance or class first)."""
        return self._call.cache_key(*args, **kwargs)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        name = getattr(self, "__qualname__", repr(self._call))
        return f"<{type(self).__name__} {name}>"


class CachedMethod(_Binding):
    """A cached method: ``obj.method`` binds ``obj``."""

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return BoundCall(self, instance)


class CachedClassMethod(_Binding):
    """A cached class method: ``Cls.method`` and ``obj.method`` bind the class."""

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return BoundCall(self, owner if owner is not None else type(instance))


class BoundCall:
    """A ``CachedMethod`` bound to an instance, or a ``CachedClassMethod`` to a class."""

    __slots__ = ("__func__", "__self__", "_call")

    def __init__(self, method: _Binding, instance: Any) -> None:
        if not isinstance(method, _Binding):
            raise TypeError(
                f"BoundCall binds a CachedMethod or CachedClassMethod, got {type(method).__name__}"
            )
        self.__func__ = method
        self.__self__ = instance
        self._call = method._call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(self.__self__, *args, **kwargs)

    # The call's ``invalidate`` and ``cache_key``: see ``_Binding``'s.

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Forget the cached result of this call."""
        return self._call.invalidate(self.__self__, *args, **kwargs)  # type: ignore[attr-defined]

    def cache_key(self, *args: Any, **kwargs: Any) -> Any:
        """The key this call is cached under."""
        return self._call.cache_key(self.__self__, *args, **kwargs)  # type: ignore[attr-defined]

    @property
    def __signature__(self) -> inspect.Signature:
        signature = inspect.signature(self.__func__)
        return signature.replace(parameters=list(signature.parameters.values())[1:])

    def __getattr__(self, name: str) -> Any:
        # __name__, __qualname__, __wrapped__, ...: the method's, as a bound method has them
        # (not the slots: an instance made without __init__, as copy does, has none yet)
        if name in BoundCall.__slots__:
            raise AttributeError(name)
        return getattr(self.__func__, name)

    def __eq__(self, other: object) -> bool:
        if type(other) is not BoundCall:
            return NotImplemented
        return other.__func__ is self.__func__ and other.__self__ is self.__self__

    def __hash__(self) -> int:
        return hash((id(self.__func__), id(self.__self__)))

    def __repr__(self) -> str:
        name = getattr(self.__func__, "__qualname__", "?")
        return f"<bound cached method {name} of {self.__self__!r}>"
