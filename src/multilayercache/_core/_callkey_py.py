"""Keys of cached function calls (pure-Python twin of ``callkey.pyx``).

``@cache.cached`` turns every call into a key: the function, and its arguments normalised
by the function's signature, so that ``f(1)``, ``f(a=1)`` and ``f(1, b=2)`` (where ``b``
defaults to 2) are one key. The in-process layer keys on a ``CallKey`` directly (cheap to
build, hash and compare: the function's token compares by identity, the arguments as a
tuple); a shared layer stores it under ``CallKey.text``, a canonical string that every
process derives alike, built only when a shared layer is asked.

``KeyMaker.key(args, kwargs)`` is the hot path of a decorated call: when the call passes
only positional arguments to a function with a plain signature (no ``*args``, keyword-only
parameters or ``**kwargs``), the normalised arguments are ``args`` plus the defaults of the
trailing parameters it left out, with no binding at all; when it passes some of them by
name, each parameter after ``args`` is looked up in ``kwargs`` by name, or takes its
default (``f(1, b=2)``: a dict look-up per parameter, where ``Signature.bind`` cost ~5 us).
Anything else (``*args`` or ``**kwargs`` in the signature, an unknown name, a name given
twice, a required parameter missing) goes through ``bind`` (``inspect.Signature.bind`` and
its defaults), which also raises the ``TypeError`` that calling the function with those
arguments would raise.

The first argument of a method is its instance (or class): ``first`` says how it enters
the key. ``FIRST_AS_INSTANCE`` (the default for methods): as the value of its class's
``__cache_key__(self)`` if the class defines one (the user saying which instances share
results), else as itself, compared by its own ``__eq__`` and ``__hash__`` (identity, unless
the class defines equality). ``FIRST_LEFT_OUT`` (``include_self=False``): not at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

FIRST_AS_ARGUMENT = 0
"""A function's first argument: like the others."""
FIRST_LEFT_OUT = 1
"""A method's instance or class, left out of the key (``include_self=False``)."""
FIRST_AS_INSTANCE = 2
"""A method's instance or class: its ``__cache_key__()`` if its class defines one, else
itself."""


class Function(Protocol):
    """What a ``CallKey`` needs of the decorated function it stands for (``FunctionToken`` in
    ``core/decorate.py``): a name, the shared text of a call's arguments, and the error that
    unhashable arguments raise."""

    name: str

    def text_for(self, arguments: tuple[Any, ...]) -> str: ...

    def unhashable(self, arguments: tuple[Any, ...]) -> TypeError: ...


class CallKey:
    """The key of one call: ``function`` (a token, compared by identity) and the normalised
    ``arguments``. ``text`` is the form shared layers store it under."""

    __slots__ = ("function", "arguments", "_hash")

    def __init__(self, function: Function, arguments: tuple[Any, ...]) -> None:
        self.function = function
        self.arguments = arguments
        try:
            self._hash = hash((id(function), arguments))
        except TypeError:
            raise function.unhashable(arguments) from None

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if type(other) is not CallKey:
            return NotImplemented
        return other.function is self.function and other.arguments == self.arguments

    @property
    def text(self) -> str:
        """``module.qualname:[arguments as canonical JSON]``, the same in every process."""
        return self.function.text_for(self.arguments)

    def __str__(self) -> str:
        try:
            return self.text
        except TypeError:  # no shared text (an instance without one): still printable
            return repr(self)

    def __repr__(self) -> str:
        return f"CallKey({self.function.name!r}, {self.arguments!r})"


class KeyMaker:
    """Normalises a call's arguments into a ``CallKey`` (see the module docstring).

    ``names``: the names of the function's positional-or-keyword parameters, in order;
    ``defaults``: the defaults of the trailing ones; ``plain``: no ``*args``, keyword-only
    parameters or ``**kwargs``; ``first``: how the first argument enters the key
    (``FIRST_*``); ``bind(args, kwargs)``: the general normalisation.
    """

    __slots__ = (
        "_token",
        "_names",
        "_positional",
        "_required",
        "_defaults",
        "_plain",
        "_first",
        "_bind",
    )

    def __init__(
        self,
        token: Function,
        names: tuple[str, ...],
        defaults: tuple[Any, ...],
        plain: bool,
        first: int,
        bind: Callable[[tuple[Any, ...], dict[str, Any]], tuple[Any, ...]],
    ) -> None:
        self._token = token
        self._names = names
        self._positional = len(names)
        self._required = len(names) - len(defaults)
        self._defaults = defaults
        self._plain = plain
        if first not in (FIRST_AS_ARGUMENT, FIRST_LEFT_OUT, FIRST_AS_INSTANCE):
            raise ValueError(f"first must be one of the FIRST_* constants, got {first!r}")
        self._first = first
        self._bind = bind

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> CallKey:
        """The key of the call ``function(*args, **kwargs)``."""
        count = len(args)
        by_name = self._by_name(args, kwargs) if kwargs and self._plain else None
        if by_name is not None:
            arguments = by_name
        elif kwargs or not self._plain or not self._required <= count <= self._positional:
            arguments = self._bind(args, kwargs or {})
        elif count == self._positional:
            arguments = args
        else:  # the trailing parameters take their defaults
            arguments = args + self._defaults[count - self._required :]
        if self._first == FIRST_LEFT_OUT:
            arguments = arguments[1:]
        elif self._first == FIRST_AS_INSTANCE and arguments:
            arguments = instance_keyed(arguments)
        return CallKey(self._token, arguments)

    def _by_name(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
        """``args``, then each later parameter from ``kwargs`` or its default: what ``bind``
        makes of a call that fits the signature; ``None`` for one that may not (``bind``
        then decides, and raises the call's own ``TypeError``)."""
        if len(args) > self._positional:
            return None
        values = list(args)
        used = 0
        for index in range(len(args), self._positional):
            value = kwargs.get(self._names[index], _ABSENT)
            if value is _ABSENT:
                if index < self._required:
                    return None  # a required parameter missing
                value = self._defaults[index - self._required]
            else:
                used += 1
            values.append(value)
        # a name that is no parameter, or one also given by position, was not used
        return tuple(values) if used == len(kwargs) else None


_ABSENT: Any = object()


def instance_keyed(arguments: tuple[Any, ...]) -> tuple[Any, ...]:
    """``arguments`` with the instance first replaced by its ``__cache_key__()``, when its
    class defines one (looked up on the class, as Python looks up special methods)."""
    instance = arguments[0]
    hook = getattr(type(instance), "__cache_key__", None)
    if hook is None:
        return arguments
    return (hook(instance), *arguments[1:])
