"""multilayercache: a fast, smart, multi-layer cache for Python.

An in-process L1 with W-TinyLFU admission (compiled core) in front of a shared Redis L2,
coordinated by a manager.
"""

from .layers.memory import InMemoryLayer
from .stats import HotKey, LayerSnapshot, LayerStats

__all__ = ["HotKey", "InMemoryLayer", "LayerSnapshot", "LayerStats"]
__version__ = "0.1.0"
