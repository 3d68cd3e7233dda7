"""The exceptions a user of the cache may catch: all of them are ``CacheError``, and each
also keeps the built-in type that says what kind of failure it is (``LoadTimeoutError`` is a
``TimeoutError``, ``SerializationError`` a ``TypeError``, ...), so ``except TimeoutError``
catches the cache's timeouts with everyone else's. The README's "Errors" table says what
raises each, what it means and what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ratelimit import LoadLimit


class CacheError(Exception):
    """Every exception the cache raises on its own account (not a loader's or writer's own
    exception passed through, not ``TypeError``/``ValueError`` for bad arguments)."""


# ---------------------------------------------------------------------------- layers
class LayerError(CacheError):
    """A layer's backend failed (connection, timeout, protocol). The manager treats a read
    error as a miss in that layer.

    ``transient``: the backend could not be reached or did not answer in time (worth a
    retry, and counted by the layer's circuit breaker); not one that answered with an
    error. ``retryable``: worth sending again later (a write-behind batch is retried within
    its budget instead of dead-lettered at once): every transient failure, and answers
    that say "not now" (a read-only replica during a failover, ``maxmemory`` reached, a
    cluster slot moving), which the breaker does not count: the server answered."""

    def __init__(
        self, message: str, *, transient: bool = True, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.retryable = transient if retryable is None else retryable


class LayerUnavailableError(LayerError):
    """A layer's backend cannot be reached: at construction with ``verify=True``, or while
    its circuit breaker is open (then raised at once, without trying)."""


class LayerRateLimited(LayerError):
    """A write found no token of the layer's rate limit (``LayerPolicy(rate_limit=...)``)
    within ``rate_limit_wait``: nothing was sent, and the faster layers dropped the key,
    as after any failed write. Transient: a later try may get a token. (A read over the
    limit never raises it: it skips the layer.)"""


def retryable(error: BaseException) -> bool:
    """Whether ``error`` is a layer failure worth sending again later (see ``LayerError``)."""
    return isinstance(error, LayerError) and error.retryable


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a transient layer failure (see ``LayerError``): the backend
    could not be reached, did not answer in time, or its circuit breaker refused the
    call."""
    return isinstance(error, LayerError) and error.transient


# ---------------------------------------------------------------------------- loads
class LoadTimeoutError(CacheError, TimeoutError):
    """A caller waited for another caller's load of its key past its hard timeout, and no
    stale value could answer instead. The load goes on, and its value is cached when it
    ends."""


class LoadGateTimeout(CacheError, TimeoutError):
    """No load slot came free in time (``LoadOptions.max_concurrent_loads``: at most that
    many independent loads at once; a caller waits ``load_wait`` seconds, or its hard
    timeout if shorter). Nothing was loaded; the key is not throttled."""

    @classmethod
    def for_limit(cls, limit: LoadLimit, waited: float | None) -> LoadGateTimeout:
        """The error for a caller that waited ``waited`` seconds for a slot of ``limit``."""
        within = f"within {waited:g} s" if waited else "at once"
        return cls(
            f"no load slot came free {within} ({limit.in_flight} of {limit.max_in_flight} "
            "loads in flight)"
        )


class LoadRateLimited(LoadGateTimeout):
    """No token of ``LoadOptions.max_loads_per_second`` came within ``load_wait`` (or the
    caller's hard timeout if shorter): the loader was not called. A ``LoadGateTimeout``
    (a ``TimeoutError``), so code that handles a full load gate handles this too."""


class ThrottledLoadError(CacheError):
    """A key's load failed moments ago and is not retried yet (``LoadOptions
    .fail_safe_throttle``), and that failure could not be raised again as a copy of
    itself (an exception class that can be neither copied nor rebuilt from its
    arguments): the failure is this error's ``__cause__``. Usually the copy is raised
    instead, of the loader's own exception type."""


class RecursiveLoadError(CacheError, RuntimeError):
    """A loader asked the cache for a key that it is itself loading (directly, or through
    the loads nested in it): waiting for that load would wait for itself forever."""


# ---------------------------------------------------------------------------- values
class SerializationError(CacheError, TypeError):
    """A value could not be encoded; nothing was written."""


class UntrustedDataError(CacheError, ValueError):
    """Bytes read back could not be decoded safely (corrupt, forged or foreign).

    ``cause`` says which check refused them, one of ``UNTRUSTED_CAUSES`` (the key of the
    counts in ``CacheStats.untrusted_reads``)."""

    def __init__(self, message: str, *, cause: str = "corrupt") -> None:
        super().__init__(message)
        self.cause = cause


UNTRUSTED_CAUSES = {
    "corrupt": "not a value this cache wrote: truncated, malformed, or an unknown format",
    "limit": "past a decoding limit: size, nesting depth, item count, or expanded size",
    "wrong_key": "written for another key (copied, or moved)",
    "forged": "a signature or authentication tag that does not verify (tampered)",
    "unknown_key_id": "encrypted under a key id this layer does not hold (retired)",
    "wrong_type": "does not fit the declared value_type (a changed schema)",
    "unpickle": "signed, but pickle cannot rebuild it (a class renamed or removed)",
}
"""Why a stored value was refused: the causes ``UntrustedDataError.cause`` takes."""


# ---------------------------------------------------------------------------- writes
class QueueFull(CacheError):
    """The write-behind queue has no room for a write (``when_full="raise"``, or still none
    after ``block_timeout``). The write was not acknowledged: nothing was queued."""

    def __init__(self, message: str, *, depth: int = 0, bytes: int = 0) -> None:
        super().__init__(message)
        self.depth = depth
        self.bytes = bytes


class WriteQueueClosed(CacheError, RuntimeError):
    """A write was put into a queue that was closed (the cache is shutting down); or, as
    the error of a dead-letter record, a write still queued when ``close_timeout`` ran
    out."""


__all__ = [
    "CacheError",
    "LayerError",
    "LayerRateLimited",
    "LayerUnavailableError",
    "LoadGateTimeout",
    "LoadRateLimited",
    "LoadTimeoutError",
    "QueueFull",
    "RecursiveLoadError",
    "SerializationError",
    "ThrottledLoadError",
    "UntrustedDataError",
    "WriteQueueClosed",
    "is_transient",
]
