"""Types of the compiled ``frontdoor.pyx``: its pure twin's interface, but for
``AsyncCachedCall.call``, a C entry there (the compiled bindings call it; Python cannot)."""

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .._core.binding import DirectCall
from ..core.decorate import CallKeys

_T = TypeVar("_T")

async def settled(value: _T) -> _T: ...

class AsyncCachedCall(DirectCall):
    # Set by ``AsyncMultilayerCache.cached`` once built (the class has a ``__dict__``).
    cache_key: CallKeys[...]
    invalidate: Callable[..., Coroutine[Any, Any, bool]]
    def __init__(
        self,
        key_of: Callable[[tuple[Any, ...], dict[str, Any] | None], Any],
        first_lookup: Callable[[Any, Any, Any], Any],
        load: Callable[[Any, tuple[Any, ...], dict[str, Any], bool], Coroutine[Any, Any, Any]],
        missing: Any,
        aside: Any,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]: ...
