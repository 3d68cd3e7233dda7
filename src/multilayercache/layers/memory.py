"""The in-process layer (L1).

``InMemoryLayer`` is implemented in the policy core: the compiled extension type when it is
built (a cache hit then never runs Python bytecode), else its pure-Python twin. Either way
it has the same behaviour; see ``multilayercache._core._memory_py`` for the readable version.

Thread safety: safe to share between threads. The compiled layer relies on the GIL (each
call is atomic with respect to the cache's structures; on a free-threaded build importing it
re-enables the GIL). The pure twin holds a lock in every method.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the twin carries the annotations; both have the same signatures
    from .._core._memory_py import InMemoryLayer
else:
    from .._core import InMemoryLayer

__all__ = ["InMemoryLayer"]
