"""Cache layers: one module per kind."""

from .memory import InMemoryLayer

__all__ = ["InMemoryLayer"]
