"""A cache's ``backplane=`` and ``fleet_info=`` options, read without importing redis unless
one is asked for: redis is an extra (``multilayercache[redis]``), and an L1-only cache must
build without it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .redis.backplane import Backplane
    from .redis.fleetinfo import FleetInfo


def backplane_of(option: Any) -> Backplane | None:
    """The ``Backplane`` the ``backplane=`` option asks for (``layers/redis/companions.py``)."""
    if option is None or option is False:
        return None
    from .redis.backplane import backplane_of as build

    return build(option)


def fleet_info_of(option: Any) -> FleetInfo | None:
    """The ``FleetInfo`` the ``fleet_info=`` option asks for (``layers/redis/companions.py``)."""
    if option is None or option is False:
        return None
    from .redis.fleetinfo import fleet_info_of as build

    return build(option)


def reader_of_fleet_info() -> FleetInfo:
    """A ``FleetInfo`` that reads the fleet's and publishes nothing (``global_top_keys``)."""
    from .redis.fleetinfo import FleetInfo

    return FleetInfo(publish=False)


__all__ = ["backplane_of", "fleet_info_of", "reader_of_fleet_info"]
