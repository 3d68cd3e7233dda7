"""Types of the compiled ``layer.pyx``: its pure twin's interface, which it shares."""

from ._layer_py import InMemoryLayer as InMemoryLayer
