"""The exceptions a user of the cache may catch."""

from __future__ import annotations


class LayerError(Exception):
    """A layer's backend failed (connection, timeout, protocol). The manager treats a read
    error as a miss in that layer.

    ``transient``: the backend could not be reached or did not answer in time (worth a
    retry, and counted by the layer's circuit breaker); not one that answered with an
    error."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


class LayerUnavailableError(LayerError):
    """A layer's backend cannot be reached: at construction with ``verify=True``, or while
    its circuit breaker is open (then raised at once, without trying)."""


class LoadTimeoutError(TimeoutError):
    """A load passed its hard timeout and no stale value could answer instead. The load
    goes on in the background, and its value is cached when it ends."""


class ThrottledLoadError(Exception):
    """A key's load failed moments ago and is not retried yet (``LoadOptions
    .fail_safe_throttle``), and that failure could not be raised again as a copy of
    itself (an exception class that can be neither copied nor rebuilt from its
    arguments): the failure is this error's ``__cause__``. Usually the copy is raised
    instead, of the loader's own exception type."""


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is a transient layer failure (see ``LayerError``): the backend
    could not be reached, did not answer in time, or its circuit breaker refused the
    call."""
    return isinstance(error, LayerError) and error.transient


class SerializationError(TypeError):
    """A value could not be encoded; nothing was written."""


class UntrustedDataError(ValueError):
    """Bytes read back could not be decoded safely (corrupt, forged or foreign)."""
