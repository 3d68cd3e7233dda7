"""The option a cache takes for a companion of its shared layer (``backplane=``,
``fleet_info=``): off, on (on the shared layer's server), a URL, or the object itself."""

from __future__ import annotations

from typing import Any, TypeVar

Companion = TypeVar("Companion")


def companion_of(option: Any, kind: type[Companion], name: str) -> Companion | None:
    """``None``/``False``: none; ``True``: ``kind()``, on the shared layer's server; a URL:
    ``kind(url)``; an instance of ``kind``: itself. Anything else: ``TypeError`` naming
    the option ``name``."""
    if option is None or option is False:
        return None
    if option is True:
        return kind()
    if isinstance(option, str):
        # Each kind (Backplane, FleetInfo) takes a url first: a TypeVar's type cannot say so.
        return kind(option)  # type: ignore[call-arg]
    if isinstance(option, kind):
        return option
    raise TypeError(f"{name} must be True, a URL or a {kind.__name__}, got {option!r}")


__all__ = ["companion_of"]
