"""Arrays for the compiled modules' tables, each large one in a memory mapping of its own.

A table that grows by doubling leaves its old copy behind each time. Allocated by numpy
(through malloc), the old copies do not all go back to the system: once glibc has freed a
mapping of some size, it serves later allocations up to that size from its heap, and a
freed block under a live one stays in the process's RSS. At 600,000 entries that was 20
bytes per entry of the layer's 118 (``docs/memory.md``). Here each array of
``OWN_MAPPING_BYTES`` or more gets a private anonymous mapping, unmapped when the array is
freed: the RSS is what the live tables hold. Pages are zero until written, as with
``calloc``, and, as numpy does, arrays of ``HUGE_PAGE_BYTES`` or more ask for huge pages
(fewer TLB misses on a large table's random reads).

Where private anonymous mappings are not offered (Windows), numpy allocates as before.
"""

from __future__ import annotations

import mmap
from typing import Any

import numpy as np
import numpy.typing as npt

OWN_MAPPING_BYTES = 1 << 17  # glibc's own first threshold for a mapping of its own
HUGE_PAGE_BYTES = 1 << 22  # numpy's threshold for asking for huge pages

_PRIVATE: int | None = getattr(mmap, "MAP_PRIVATE", None)
_HUGE_PAGES: int | None = getattr(mmap, "MADV_HUGEPAGE", None)


def zeros(count: int, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """``np.zeros(count, dtype)``, in a mapping of its own if large."""
    kind = np.dtype(dtype)
    size = count * kind.itemsize
    if size < OWN_MAPPING_BYTES or _PRIVATE is None:
        return np.zeros(count, dtype=kind)
    # Private (copy on write in a forked child, as malloc's memory is); fileno -1 adds
    # MAP_ANONYMOUS. The array holds the mapping, which is unmapped when both are gone.
    mapping = mmap.mmap(-1, size, flags=_PRIVATE)
    if size >= HUGE_PAGE_BYTES and _HUGE_PAGES is not None:
        mapping.madvise(_HUGE_PAGES)
    return np.frombuffer(mapping, dtype=kind, count=count)


def full(count: int, fill: int, dtype: npt.DTypeLike) -> npt.NDArray[Any]:
    """``np.full(count, fill, dtype)``, in a mapping of its own if large."""
    array = zeros(count, dtype)
    if fill:
        array.fill(fill)
    return array
