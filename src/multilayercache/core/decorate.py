"""What ``@cache.cached`` decides, for both managers: how a call becomes a key, how a function
defined in a class binds, what type its values are read back as, and the checks of its
options.

Keys, by the ``key=`` option:

* ``None`` (default): a ``CallKey`` of the function and its arguments normalised by its
  signature (``f(1)``, ``f(a=1)`` and ``f(1, b=2)`` with ``b=2`` by default are one key).
  Shared layers store it as ``module.qualname:[JSON of the arguments]``, so arguments must
  be JSON-encodable once a shared layer is involved (a class is written as its
  ``module.qualname``).
* a template string, ``"user:{user_id}"`` (or ``"price:{self.currency}:{item}"``):
  formatted with the bound arguments by name.
* a function: ``key(*args, **kwargs)`` returns the key.

Methods. A function defined in a class body (or whose first parameter is ``self`` or
``cls``), and a ``classmethod`` or ``staticmethod`` given to ``cached``, is returned
wrapped to bind as a method does (``_core/_binding_py.py``): ``obj.method(...)``,
``obj.method.invalidate(...)`` and ``obj.method.cache_key(...)`` pass the instance first, as a
bound method does. The instance (or class) is part of the key, so two instances never share
a result unless the user says so:

* by default it enters as ``type(instance).__cache_key__(instance)`` when its class defines
  that method (the user's statement of which instances share results, e.g. their database
  id), else as the instance itself, compared by its own ``__eq__`` and ``__hash__``
  (identity for a plain class, its fields for a frozen dataclass);
* in a shared layer it must have a text that every process derives alike: its
  ``__cache_key__()``, the fields of a dataclass or msgspec ``Struct``, a class's name. An
  instance without one (a plain object: its identity means nothing to another process)
  makes the call raise a ``TypeError`` that says so, instead of sharing results wrongly;
* ``include_self=False`` leaves it out (results do not depend on the instance), as does a
  ``key=`` template or function that does not name it.

``value_type`` defaults to the function's return annotation (``-> tuple[int, str]``), so
that a shared layer hands back what the function returns.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import inspect
import typing
import uuid
from collections.abc import Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    NamedTuple,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
)

import msgspec

from .._build import twin
from .ttl import TTL, optional_ttl_seconds

if TYPE_CHECKING:  # the twins carry the annotations; the compiled modules share them
    from .._core import _binding_py as _binding
    from .._core import _callkey_py as _callkey
else:
    _callkey = twin("multilayercache._core.callkey", "multilayercache._core._callkey_py")
    _binding = twin("multilayercache._core.binding", "multilayercache._core._binding_py")
CallKey = _callkey.CallKey
KeyMaker = _callkey.KeyMaker
FIRST_AS_ARGUMENT = _callkey.FIRST_AS_ARGUMENT
FIRST_LEFT_OUT = _callkey.FIRST_LEFT_OUT
FIRST_AS_INSTANCE = _callkey.FIRST_AS_INSTANCE

CachedMethod = _binding.CachedMethod
CachedClassMethod = _binding.CachedClassMethod

BINDS_INSTANCE = "instance"
"""A method: ``obj.method`` binds ``obj``."""
BINDS_CLASS = "class"
"""A class method: ``Cls.method`` and ``obj.method`` bind the class."""
BINDS_NOTHING = "nothing"
"""A static method: ``Cls.method`` and ``obj.method`` are the cached function itself."""

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")

Condition = Callable[[Any], bool]
"""``condition(value)``: whether a loaded value is cached (``lambda v: v is not None``)."""


class CachedFunction(Protocol[P, R_co]):
    """What ``MultilayerCache.cached`` returns: the function, cached, plus its key tools.

    In a class, ``obj.method`` is a ``CachedFunction`` without the ``self`` parameter, and
    so are ``Cls.method`` of a class method and ``Cls.method`` / ``obj.method`` of a static
    method: ``__get__`` tells mypy so (a first parameter typed ``type[...]`` binds the
    class, one that the instance matches binds the instance; anything else, as in a static
    method, stays as it is).
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result of this call; True if a layer had it."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """The key this call is cached under."""
        ...

    # mypy sees neither @classmethod nor @staticmethod through a decorator's result (it
    # takes them off the decorator list), so the overloads tell the kinds apart by the first
    # parameter. The class method overload's self type is not one mypy accepts for a
    # protocol (hence the ignore), but it resolves calls as intended.
    @overload
    def __get__(  # type: ignore[misc]
        self: Callable[Concatenate[type[S], Q], R], instance: S | None, owner: type[S], /
    ) -> CachedFunction[Q, R]: ...
    @overload
    def __get__(self, instance: None, owner: type[Any], /) -> CachedFunction[P, R_co]: ...
    @overload
    def __get__(
        self: Callable[Concatenate[S, Q], R], instance: S, owner: type[Any] | None = None, /
    ) -> CachedFunction[Q, R]: ...
    @overload
    def __get__(
        self, instance: object, owner: type[Any] | None = None, /
    ) -> CachedFunction[P, R_co]: ...


class AsyncCachedFunction(Protocol[P, R_co]):
    """What ``AsyncMultilayerCache.cached`` returns (bound in a class as ``CachedFunction``
    is)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, bool]:
        """Forget the cached result of this call; True if a layer had it."""
        ...

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """The key this call is cached under."""
        ...

    @overload
    def __get__(  # type: ignore[misc]
        self: Callable[Concatenate[type[S], Q], Coroutine[Any, Any, R]],
        instance: S | None,
        owner: type[S],
        /,
    ) -> AsyncCachedFunction[Q, R]: ...
    @overload
    def __get__(self, instance: None, owner: type[Any], /) -> AsyncCachedFunction[P, R_co]: ...
    @overload
    def __get__(
        self: Callable[Concatenate[S, Q], Coroutine[Any, Any, R]],
        instance: S,
        owner: type[Any] | None = None,
        /,
    ) -> AsyncCachedFunction[Q, R]: ...
    @overload
    def __get__(
        self, instance: object, owner: type[Any] | None = None, /
    ) -> AsyncCachedFunction[P, R_co]: ...


class Decorated(NamedTuple):
    """What ``cached`` was given: the plain function, how it binds in its class
    (``BINDS_*``, or ``None`` outside a class) and how its first argument enters the key
    (``FIRST_*``)."""

    function: Callable[..., Any]
    binds: str | None
    first: int


def decorated(target: Any, include_self: bool, key: object) -> Decorated:
    """Unwrap ``target`` (a function, ``classmethod`` or ``staticmethod``) and decide how it
    binds and keys its first argument (see the module docstring)."""
    binds: str | None
    if isinstance(target, staticmethod):
        function, binds = target.__func__, BINDS_NOTHING
    elif isinstance(target, classmethod):
        function, binds = target.__func__, BINDS_CLASS
    elif callable(target):
        function = target
        named_self = _first_parameter(function) in ("self", "cls")
        binds = BINDS_INSTANCE if named_self or _defined_in_class(function) else None
    else:
        raise TypeError(f"cached() decorates a function, got {type(target).__name__}")
    first = FIRST_AS_ARGUMENT
    if binds in (BINDS_INSTANCE, BINDS_CLASS) and _first_parameter(function) is not None:
        first = FIRST_AS_INSTANCE if include_self else FIRST_LEFT_OUT
    if not include_self:
        if key is not None:
            raise TypeError(
                "include_self=False applies to the default key; a key template or function "
                "already decides what is in the key"
            )
        if binds != BINDS_CLASS and _first_parameter(function) not in ("self", "cls"):
            raise TypeError(
                f"include_self=False: {function.__qualname__} has no self or cls parameter "
                "to leave out of its key"
            )
    return Decorated(function, binds, first)


def _first_parameter(function: Callable[..., Any]) -> str | None:
    """The name of the function's first positional parameter, if it has one."""
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            return parameter.name
        break
    return None


def _defined_in_class(function: Callable[..., Any]) -> bool:
    """Whether the function was defined in a class body (``Prices.price``, not ``price`` nor
    ``service.<locals>.price``)."""
    parts = getattr(function, "__qualname__", "").split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"


def in_class(call: Callable[..., Any], target: Decorated) -> Any:
    """``call`` as ``cached`` returns it: itself outside a class, else wrapped to bind as
    the target does (``_core/_binding_py.py``)."""
    if target.binds is None:
        return call
    if target.binds == BINDS_NOTHING:
        return staticmethod(call)  # nothing to bind: the call, its invalidate and cache_key
    method = (CachedMethod if target.binds == BINDS_INSTANCE else CachedClassMethod)(call)
    functools.update_wrapper(method, target.function)
    return method


def coroutine_like(cached: Any, function: Callable[..., Any]) -> Any:
    """``cached`` (what ``in_class`` returned for the coroutine function ``function``) made
    to pass ``inspect.iscoroutinefunction`` and ``asyncio.iscoroutinefunction``, as frameworks
    ask before they await (FastAPI, Starlette). It is no Python function, so it gets the
    attributes ``inspect`` reads from a function-like object (the ones a Cython function
    has): ``function``'s code object, whose flags say coroutine, and its defaults; and on
    Python 3.12+ the public mark too. A ``BoundCall`` of it reads them from its method, and
    ``inspect.signature`` still reads ``__wrapped__`` (or the bound call's ``__signature__``)."""
    target = cached.__func__ if isinstance(cached, staticmethod) else cached
    target.__code__ = function.__code__
    target.__defaults__ = function.__defaults__
    target.__kwdefaults__ = function.__kwdefaults__
    mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
    if mark is not None:
        mark(target)
    return cached


class FunctionToken:
    """Stands for one decorated function inside its ``CallKey``s (compared by identity),
    and turns their arguments into the text shared layers store them under."""

    __slots__ = ("name", "_instance_first", "_encode")

    def __init__(self, function: Callable[..., Any], instance_first: bool = False) -> None:
        self.name = f"{function.__module__}.{function.__qualname__}"
        self._instance_first = instance_first
        self._encode = msgspec.json.Encoder(enc_hook=_class_name).encode

    def text_for(self, arguments: tuple[Any, ...]) -> str:
        try:
            encoded = self._encode(_canonical(arguments))
        except (TypeError, ValueError, OverflowError) as error:
            if self._instance_first and not self._encodes(arguments[0]):
                raise TypeError(
                    f"cannot build a shared cache key for {self.name}: a "
                    f"{type(arguments[0]).__qualname__} instance has no text that other "
                    f"processes derive alike (its identity means nothing to them); "
                    f"{_INSTANCE_ADVICE}"
                ) from None
            raise TypeError(
                f"cannot build a shared cache key for {self.name} from its arguments ({error}); "
                "pass key='template {name}' or key=function to cached()"
            ) from None
        return f"{self.name}:{encoded.decode()}"

    def _encodes(self, value: Any) -> bool:
        try:
            self._encode(value)
        except (TypeError, ValueError, OverflowError):
            return False
        return True

    def unhashable(self, arguments: tuple[Any, ...]) -> TypeError:
        if self._instance_first and arguments and not _hashable(arguments[0]):
            return TypeError(
                f"cached method {self.name} keys its instance by itself (its class defines no "
                f"__cache_key__), and a {type(arguments[0]).__qualname__} is unhashable; "
                f"{_INSTANCE_ADVICE}"
            )
        kinds = sorted({type(argument).__name__ for argument in arguments})
        return TypeError(
            f"the arguments of cached function {self.name} must be hashable to make a key "
            f"(got {', '.join(kinds)}); pass key='template {{name}}' or key=function to cached()"
        )

    def __repr__(self) -> str:
        return f"<cached function {self.name}>"


_INSTANCE_ADVICE = (
    "define __cache_key__(self) on its class, returning what identifies the instance's state "
    "(a str, an int, a tuple of them), pass include_self=False if results do not depend on "
    "the instance, or pass key='template {self.id}' or key=function to cached()"
)


def _class_name(value: Any) -> str:
    """How a class is written in a shared key (msgspec's hook for what it cannot encode)."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    raise TypeError(f"{type(value).__qualname__} is not JSON-encodable")


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


_NAMED = (
    bytes, bytearray, memoryview, datetime.date, datetime.time, datetime.timedelta, uuid.UUID,
    decimal.Decimal, enum.Enum,
)  # fmt: skip
"""Types whose JSON is another type's (a str, a number): their text is named by their type."""


def _canonical(value: Any) -> Any:
    """``value`` as its key text is made: the calls L1 takes for one (their arguments are
    equal: ``f(1)``, ``f(1.0)``, ``f(True)``) get one text, so every layer answers them
    alike. Equal numbers become the same int; containers are walked. And calls L1 tells
    apart get different texts: JSON writes ``nan``, ``inf`` and ``-inf`` as ``null``, a
    ``date`` or ``bytes`` as a str, a plain ``Enum`` as its value, so those are named by
    their type (``{"datetime.date": "2020-01-01"}``), and a frozenset's items are sorted,
    since its order differs between processes (str hashes are randomised)."""
    kind = type(value)
    if kind is str or kind is int or value is None:
        return value
    if kind is bool:
        return int(value)
    if kind is float:
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value if value - value == 0.0 else {"builtins.float": repr(value)}
    if kind is tuple or kind is list:
        return [_canonical(item) for item in value]
    if kind is dict:
        return {item: _canonical(entry) for item, entry in value.items()}
    if isinstance(value, int):  # IntEnum, IntFlag: equal to their int, as in L1
        return int(value)
    if isinstance(value, str):  # a str Enum: equal to its str
        return str(value)
    if isinstance(value, (set, frozenset)):
        items = [_canonical(item) for item in value]
        return {"builtins.frozenset": sorted(items, key=_SORTING)}
    if isinstance(value, _NAMED):
        return {f"{kind.__module__}.{kind.__qualname__}": value}
    return value


_SORTING = msgspec.json.Encoder(enc_hook=lambda value: _class_name(value)).encode
"""The order of a frozenset's items in its text: by their JSON."""


class CallKeys(Generic[P]):
    """How calls of one function become keys (see the module docstring)."""

    def __init__(
        self,
        function: Callable[P, Any],
        key: str | Callable[..., Any] | None,
        first: int = FIRST_AS_ARGUMENT,
    ) -> None:
        self.signature = inspect.signature(function)
        parameters = list(self.signature.parameters.values())
        if key is None:
            positional = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
            plain = len(positional) == len(parameters)
            defaults = tuple(p.default for p in positional if p.default is not p.empty)
            token = FunctionToken(function, instance_first=first == FIRST_AS_INSTANCE)
            names = tuple(p.name for p in positional)
            maker = KeyMaker(token, names, defaults, plain, first, self.bind)
            self.of: Callable[[tuple[Any, ...], dict[str, Any] | None], Any] = maker.key
        elif isinstance(key, str):
            self.of = self._template(key)
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

    def _template(self, template: str) -> Callable[[tuple[Any, ...], dict[str, Any] | None], str]:
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
