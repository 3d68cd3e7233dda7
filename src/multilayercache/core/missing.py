"""``MISSING``: "no value", where ``None`` is a legitimate cached value."""

from __future__ import annotations


class Missing:
    """The type of ``MISSING`` (a singleton, falsy)."""

    _instance: Missing | None = None

    def __new__(cls) -> Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"  # unpickles as the module-level singleton


MISSING = Missing()


class SteppedAside:
    """The type of ``STEPPED_ASIDE``: an in-process layer's ``lookup`` holds the key, but
    not a settled fresh value (a refresh is due, or it is stale): the manager's plans take
    over, from that layer on. Nothing was counted."""

    _instance: SteppedAside | None = None

    def __new__(cls) -> SteppedAside:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "STEPPED_ASIDE"

    def __bool__(self) -> bool:
        return False


STEPPED_ASIDE = SteppedAside()
