"""What ``@cache.cached`` decides, for both managers: how a call becomes a key, what type its
values are read back as, and the checks of its options.

Keys, by the ``key=`` option:

* ``None`` (default): a ``CallKey`` of the function and its arguments normalised by its
  signature (``f(1)``, ``f(a=1)`` and ``f(1, b=2)`` with ``b=2`` by default are one key).
  The instance of a method (a first parameter named ``self`` or ``cls``) is left out unless
  ``include_self=True``. Shared layers store it as ``module.qualname:[JSON of the
  arguments]``, so arguments must be JSON-encodable once a shared layer is involved.
* a template string, ``"user:{user_id}"``: formatted with the bound arguments by name.
* a function: ``key(*args, **kwargs)`` returns the key.

``value_type`` defaults to the function's return annotation (``-> tuple[int, str]``), so
that a shared layer hands back what the function returns.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

import msgspec

from .._build import twin
from .ttl import TTL, optional_ttl_seconds

_callkey = twin("multilayercache._core.callkey", "multilayercache._core._callkey_py")
CallKey = _callkey.CallKey
KeyMaker = _callkey.KeyMaker

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

Condition = Callable[[Any], bool]
"""``condition(value)``: whether a loaded value is cached (``lambda v: v is not None``)."""


class CachedFunction(Protocol[P, R_co]):
    """What ``MultilayerCache.cached`` returns: the function, cached, plus its key tools."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result of this call; True if a layer had it."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """The key this call is cached under."""
        ...


class AsyncCachedFunction(Protocol[P, R_co]):
    """What ``AsyncMultilayerCache.cached`` returns."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, bool]:
        """Forget the cached result of this call; True if a layer had it."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """The key this call is cached under."""
        ...


class FunctionToken:
    """Stands for one decorated function inside its ``CallKey``s (compared by identity),
    and turns their arguments into the text shared layers store them under."""

    __slots__ = ("name", "_encode")

    def __init__(self, function: Callable[..., Any]) -> None:
        self.name = f"{function.__module__}.{function.__qualname__}"
        self._encode = msgspec.json.Encoder().encode

    def text_for(self, arguments: tuple[Any, ...]) -> str:
        try:
            encoded = self._encode(list(arguments))
        except (TypeError, ValueError, OverflowError) as error:
            raise TypeError(
                f"cannot build a shared cache key for {self.name} from its arguments ({error}); "
                "pass key='template {name}' or key=function to cached()"
            ) from None
        return f"{self.name}:{encoded.decode()}"

    def unhashable(self, arguments: tuple[Any, ...]) -> TypeError:
        kinds = sorted({type(argument).__name__ for argument in arguments})
        return TypeError(
            f"the arguments of cached function {self.name} must be hashable to make a key "
            f"(got {', '.join(kinds)}); pass key='template {{name}}' or key=function to cached()"
        )

    def __repr__(self) -> str:
        return f"<cached function {self.name}>"


class CallKeys(Generic[P]):
    """How calls of one function become keys (see the module docstring)."""

    def __init__(
        self,
        function: Callable[P, Any],
        key: str | Callable[..., Any] | None,
        include_self: bool,
    ) -> None:
        self.signature = inspect.signature(function)
        parameters = list(self.signature.parameters.values())
        skip_first = not include_self and bool(parameters) and parameters[0].name in ("self", "cls")
        if key is None:
            positional = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
            plain = len(positional) == len(parameters)
            defaults = tuple(p.default for p in positional if p.default is not p.empty)
            maker = KeyMaker(
                FunctionToken(function), len(positional), defaults, plain, skip_first, self.bind
            )
            self.of: Callable[[tuple[Any, ...], dict[str, Any] | None], Any] = maker.key
        elif isinstance(key, str):
            self.of = self._template(key, skip_first)
        elif callable(key):
            self.of = lambda args, kwargs: key(*args, **(kwargs or {}))
        else:
            raise TypeError(f"key must be a template str or a function, got {type(key).__name__}")

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """Every parameter's value for this call, in order, defaults applied (``*args`` as a
        tuple, ``**kwargs`` as sorted items); a ``TypeError`` like the call's own."""
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = []
        for name, value in bound.arguments.items():
            kind = self.signature.parameters[name].kind
            values.append(tuple(sorted(value.items())) if kind is kind.VAR_KEYWORD else value)
        return tuple(values)

    def _template(
        self, template: str, skip_first: bool
    ) -> Callable[[tuple[Any, ...], dict[str, Any] | None], str]:
        names = list(self.signature.parameters)
        for field in _template_fields(template):
            if field not in names:
                raise ValueError(f"key template {template!r} names {field!r}, not a parameter")

        def key_of(args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> str:
            bound = self.signature.bind(*args, **(kwargs or {}))
            bound.apply_defaults()
            return template.format_map(bound.arguments)

        return key_of

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """The key of ``function(*args, **kwargs)``."""
        return self.of(args, kwargs)


def _template_fields(template: str) -> list[str]:
    import string

    fields = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            fields.append(field.split(".")[0].split("[")[0])
    return fields


def return_type(function: Callable[..., Any]) -> Any:
    """The function's return annotation as a ``value_type`` (``None`` when it has none, or
    when it cannot be resolved at decoration time)."""
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # a forward reference that does not resolve yet
        return None
    annotation = hints.get("return")
    if annotation is None or annotation is Any:
        return None
    return annotation


def check_options(ttl: TTL | None, condition: Condition | None) -> None:
    """``cached(...)``'s options are checked when the decorator is made, not at a call."""
    optional_ttl_seconds(ttl)
    if condition is not None and not callable(condition):
        raise TypeError(f"condition must be a function of the value, got {condition!r}")


def check_kind(function: Callable[..., Any], coroutine: bool) -> None:
    """A sync manager decorates plain functions, an asyncio one coroutine functions."""
    if inspect.iscoroutinefunction(function) and not coroutine:
        raise TypeError(
            f"{function.__qualname__} is a coroutine function: "
            "decorate it with AsyncMultilayerCache.cached"
        )
    if coroutine and not inspect.iscoroutinefunction(function):
        raise TypeError(
            f"{function.__qualname__} is not a coroutine function: "
            "decorate it with MultilayerCache.cached"
        )
