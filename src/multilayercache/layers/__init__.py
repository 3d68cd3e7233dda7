"""Cache layers, one folder each: ``memory`` (the in-process L1) and ``redis`` (the shared
L2). ``base`` says what the managers expect of a layer."""

from .base import MISSING, AsyncLayer, Layer, LayerError, LayerPolicy, LayerUnavailableError

__all__ = ["MISSING", "AsyncLayer", "Layer", "LayerError", "LayerPolicy", "LayerUnavailableError"]
