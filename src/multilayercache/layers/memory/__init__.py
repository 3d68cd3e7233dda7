"""The in-process layer (L1): ``InMemoryLayer``.

The compiled extension type (``layer.pyx``, a cache hit then never runs Python bytecode)
when it is built, else its pure-Python twin (``_layer_py.py``, the readable reference).
Either way it has the same behaviour.

Thread safety: safe to share between threads. The compiled layer relies on the GIL (each
call is atomic with respect to the cache's structures; on a free-threaded build importing it
re-enables the GIL). The pure twin holds a lock in every method.
"""

from typing import TYPE_CHECKING

from ..._build import twin

if TYPE_CHECKING:  # the twin carries the annotations; both have the same signatures
    from ._layer_py import InMemoryLayer
else:
    InMemoryLayer = twin(
        "multilayercache.layers.memory.layer", "multilayercache.layers.memory._layer_py"
    ).InMemoryLayer

__all__ = ["InMemoryLayer"]
