"""Types of the compiled ``frontdoor.pyx``: its pure twin's interface, but for
``CachedCall.call``, a C entry there (the compiled bindings call it; Python cannot)."""

from collections.abc import Callable
from typing import Any

from .._core.binding import KeyedCall
from ..core.decorate import CallKeys
from ..core.plans import Loaded
from ..core.state import CacheState
from ..core.tiers import Tier
from .singleflight import SingleFlight

class FrontDoor:
    def __init__(
        self,
        first_get: Callable[[Any, Any], Any],
        first_lookup: Callable[[Any, Any, Any], Any],
        below: Callable[[Any, Any], Any],
        load_below: Callable[..., Any],
        check_ttl: Callable[[Any], object],
        missing: Any,
        aside: Any,
        set_below: Callable[[Any, Any, Any, Any], None],
        only: Tier | None = None,
        loads: tuple[CacheState, SingleFlight, Callable[[Any, Any], Loaded]] | None = None,
    ) -> None: ...
    def get(self, key: Any, default: Any = None) -> Any: ...
    def load_alone(
        self, key: Any, loader: Any, ttl: Any, condition: Callable[[Any], bool] | None = None
    ) -> Any: ...
    def set(self, key: Any, value: Any, ttl: Any = None, tags: Any = ()) -> None: ...
    def get_or_load(
        self,
        key: Any,
        loader: Any,
        ttl: Any = None,
        value_type: Any = None,
        soft_timeout: Any = None,
        hard_timeout: Any = None,
        tags: Any = (),
        fleet_single_flight: Any = None,
    ) -> Any: ...

class CachedCall(KeyedCall):
    # Set by ``MultilayerCache.cached`` once built (the class has a ``__dict__``).
    cache_key: CallKeys[...]
    invalidate: Callable[..., bool]
