"""Types of the compiled ``frontdoor.pyx``: its pure twin's interface, but for
``AsyncCachedCall.call``, a C entry there (the compiled bindings call it; Python cannot)."""

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .._core.binding import KeyedCall
from ..core.decorate import CallKeys

_T = TypeVar("_T")

async def settled(value: _T) -> _T: ...

class AsyncCachedCall(KeyedCall):
    # Set by ``AsyncMultilayerCache.cached`` once built (the class has a ``__dict__``).
    cache_key: CallKeys[...]
    invalidate: Callable[..., Coroutine[Any, Any, bool]]
    def __call__(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]: ...
