"""What a caller without a stale value gets while its key's last load failed moments ago
(fail-safe throttle): the same failure again, without the loader being called.

With ``LoadOptions(fail_safe=True)``, a key whose load failed is not loaded again for
``fail_safe_throttle`` seconds. A caller with a stale value gets that (fail-safe proper);
one without gets the failure again: a copy of the loader's exception, of the same type and
message, so that ``except TheLoadersError`` still catches it, raised ``from`` the original
(whose traceback shows where the loader failed) with a note saying that it is a replay.
A copy, not the exception itself: re-raising one object would grow its traceback at each
raise and share it between the threads raising it at once.

Only the same load is replayed: a caller that passes another loader (not the same
function, nor a function of the same code over equal captured values, as a lambda made
anew at each call from one place is) is trying something else, and its loader runs.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import FunctionType
from typing import Any, NamedTuple

from .errors import ThrottledLoadError


class FailedLoad(NamedTuple):
    """A key's last failed load: what it raised, and the loader that raised it."""

    error: BaseException
    loader: Callable[..., Any]


def same_load(failed: Callable[..., Any], loader: Callable[..., Any]) -> bool:
    """Whether ``loader`` runs the load that ``failed`` ran: the same callable (or an equal
    one: a bound method of the same object), or a function of the same code whose captured
    variables are equal (a lambda or wrapper made anew at each call, ``@cached``'s)."""
    if failed is loader:
        return True
    try:
        if failed == loader:
            return True
        if not isinstance(failed, FunctionType) or not isinstance(loader, FunctionType):
            return False  # (a bound method passes its function's __code__ along)
        if failed.__code__ is not loader.__code__:
            return False
        return bool(
            _captured(failed) == _captured(loader)
            and getattr(failed, "__defaults__", None) == getattr(loader, "__defaults__", None)
        )
    except Exception:  # an __eq__ that raises, an empty cell: not known to be the same
        return False


def _captured(function: FunctionType) -> tuple[Any, ...]:
    return tuple(cell.cell_contents for cell in function.__closure__ or ())


def replay(failure: FailedLoad, key: Any, retry_in: float) -> BaseException:
    """The exception to raise for ``key`` while its last load failure holds it off for
    ``retry_in`` more seconds; raise it ``from failure.error``."""
    error = failure.error
    again = _copy(error)
    note = (
        f"multilayercache: loading {key!r} failed moments ago; not loaded again for "
        f"{retry_in:.3g} s more (LoadOptions.fail_safe_throttle): this is that failure again"
    )
    if again is None:
        return ThrottledLoadError(f"{note}: {type(error).__name__}: {error}")
    again.add_note(note)
    return again


def _copy(error: BaseException) -> BaseException | None:
    """A copy of ``error`` without its traceback or chain: by ``copy.copy`` (which
    rebuilds it from its arguments), else built from its arguments without running its
    ``__init__``; ``None`` if neither gives an exception of its type."""
    cls = type(error)
    try:
        again = copy.copy(error)
    except Exception:
        try:
            again = cls.__new__(cls, *error.args)
            again.__dict__.update(getattr(error, "__dict__", {}))
        except Exception:
            return None
    if type(again) is not cls:
        return None
    again.__traceback__ = None
    again.__cause__ = again.__context__ = None
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        again.__notes__ = list(notes)  # the shallow copy shares the original's list
    return again


__all__ = ["FailedLoad", "replay", "same_load"]
