"""Trace replay: hit ratio of ``InMemoryLayer`` against LRU and the optimum (Belady).

A trace is a sequence of integer keys, one per request (``numpy`` ``uint64``). Every request
is a read of a unit-size object: ``get``, and ``set`` on a miss. Hit ratio = hits / requests.
"""

from __future__ import annotations

import heapq
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..layers.memory import InMemoryLayer


class Replayed(Protocol):
    """What ``replay`` needs of a layer: ``InMemoryLayer``'s ``get`` and ``set``."""

    def get(self, key: Any, default: Any = None) -> Any: ...

    def set(self, key: Any, value: Any) -> object: ...


Progress = Callable[[int], object]
"""Called with the number of requests replayed since the last call (what it returns is
ignored: a progress bar's ``update`` fits)."""

_PROGRESS_STEP = 65_536

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"  # a .npz file is a zip archive of .npy files
_NPZ_ARRAY = "keys"


def find_trace(folder: str | Path, name: str) -> Path:
    """The file of the trace ``name`` in ``folder``: ``NAME.npy``, else ``NAME.npz`` (the
    shared traces keep the three large ones compressed); ``FileNotFoundError`` if neither."""
    for suffix in (".npy", ".npz"):
        path = Path(folder) / f"{name}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"no trace {name!r} (.npy or .npz) in {folder}")


def load_trace(path: str | Path) -> np.ndarray:
    """Load a trace as a ``uint64`` array, one key per request.

    ``.npy``: a 1-D array of integer keys. ``.npz``: an archive holding such an array named
    ``keys`` (the shared traces store large ones as ``uint32`` there). The file's contents,
    not its name, decide which it is. Unsigned keys are widened to ``uint64`` directly, never
    through ``int64``, so 64-bit hashes up to 2^64-1 survive. Raises ``OSError`` if the file
    cannot be read and ``ValueError`` (naming the file) if it does not hold a trace.
    """
    with open(path, "rb") as file:  # OSError here: missing, a folder, not readable
        magic = file.read(len(_NPY_MAGIC))
        file.seek(0)
        if not (magic == _NPY_MAGIC or magic.startswith(_ZIP_MAGIC)):
            raise ValueError(f"{path}: not a trace (expected a .npy array or a .npz archive)")
        names: list[str] = []
        trace: np.ndarray | None
        try:
            if magic == _NPY_MAGIC:
                trace = np.load(file, allow_pickle=False)
            else:
                with np.load(file, allow_pickle=False) as archive:
                    names = archive.files
                    trace = archive[_NPZ_ARRAY] if _NPZ_ARRAY in names else None
        except (EOFError, ValueError, zipfile.BadZipFile) as error:
            # numpy's own complaints: a truncated file, pickled objects, a damaged archive
            raise ValueError(f"{path}: unreadable trace file: {error}") from error
    if trace is None:
        raise ValueError(
            f"{path}: a .npz trace holds an array {_NPZ_ARRAY!r}; this one holds: "
            f"{', '.join(names) or 'nothing'}"
        )
    if trace.ndim != 1 or not np.issubdtype(trace.dtype, np.integer):
        raise ValueError(
            f"{path}: a trace is a 1-D array of integer keys, got a {trace.ndim}-D array "
            f"of {trace.dtype}"
        )
    if np.issubdtype(trace.dtype, np.signedinteger) and trace.size and trace.min() < 0:
        raise ValueError(f"{path}: trace keys must be >= 0, found {trace.min()}")
    return trace.astype(np.uint64, copy=False)


def _keys(trace: np.ndarray | Sequence[int]) -> list[int]:
    # Python ints (never through int64: keys may be 64-bit hashes above 2^63).
    return trace.tolist() if isinstance(trace, np.ndarray) else list(trace)


def _chunks(keys: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(keys), _PROGRESS_STEP):
        yield keys[start : start + _PROGRESS_STEP]


def replay(
    trace: np.ndarray | Sequence[int],
    size: int,
    progress: Progress | None = None,
    layer_factory: Callable[[int], Replayed] = lambda size: InMemoryLayer(max_size=size),
) -> int:
    """Replay through a fresh layer of ``size`` entries; return the number of hits."""
    layer = layer_factory(size)
    get, put = layer.get, layer.set
    missing = object()
    hits = 0
    for chunk in _chunks(_keys(trace)):
        for key in chunk:
            if get(key, missing) is missing:
                put(key, True)
            else:
                hits += 1
        if progress:
            progress(len(chunk))
    return hits


def lru_hits(trace: np.ndarray | Sequence[int], size: int, progress: Progress | None = None) -> int:
    """Hits of a plain LRU cache of ``size`` entries."""
    cache: OrderedDict[int, None] = OrderedDict()
    hits = 0
    for chunk in _chunks(_keys(trace)):
        for key in chunk:
            if key in cache:
                cache.move_to_end(key)
                hits += 1
            else:
                cache[key] = None
                if len(cache) > size:
                    cache.popitem(last=False)
        if progress:
            progress(len(chunk))
    return hits


def next_uses(trace: np.ndarray | Sequence[int]) -> np.ndarray:
    """For each request, the index of the next request of the same key (or len(trace))."""
    keys = np.asarray(trace, dtype=np.uint64)
    n = len(keys)
    _, ids = np.unique(keys, return_inverse=True)
    order = np.lexsort((np.arange(n), ids))  # requests grouped by key, in time order
    following = np.full(n, n, dtype=np.int64)
    same_key = ids[order[1:]] == ids[order[:-1]]
    following[order[:-1][same_key]] = order[1:][same_key]
    return following


def belady_hits(
    trace: np.ndarray | Sequence[int], size: int, progress: Progress | None = None
) -> int:
    """Hits of the optimal offline policy (Belady's MIN, allowed to bypass): on a miss with a
    full cache, evict the entry used farthest in the future, or keep the new key out if it
    is the one used last. This is the true upper bound for any cache of ``size`` entries."""
    keys = _keys(trace)
    following = next_uses(trace).tolist()
    n = len(keys)
    next_use: dict[int, int] = {}  # cached key -> index of its next request
    farthest: list[tuple[int, int]] = []  # max-heap of (-next use, key), stale items allowed
    hits = 0
    for start in range(0, n, _PROGRESS_STEP):
        stop = min(n, start + _PROGRESS_STEP)
        for i in range(start, stop):
            key = keys[i]
            upcoming = following[i]
            if key in next_use:
                hits += 1
            elif len(next_use) >= size:
                while -farthest[0][0] != next_use.get(farthest[0][1]):
                    heapq.heappop(farthest)  # drop stale heap items
                if -farthest[0][0] <= upcoming:
                    continue  # the new key is needed last: bypass it
                del next_use[heapq.heappop(farthest)[1]]
            next_use[key] = upcoming
            heapq.heappush(farthest, (-upcoming, key))
        if progress:
            progress(stop - start)
    return hits
