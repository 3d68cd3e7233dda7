"""The exceptions a user of the cache may catch."""

from __future__ import annotations


class LayerError(Exception):
    """A layer's backend failed (connection, timeout, protocol). The manager treats a read
    error as a miss in that layer."""


class LayerUnavailableError(LayerError):
    """A layer's backend cannot be reached (raised at construction with ``verify=True``)."""


class SerializationError(TypeError):
    """A value could not be encoded; nothing was written."""


class UntrustedDataError(ValueError):
    """Bytes read back could not be decoded safely (corrupt, forged or foreign)."""
