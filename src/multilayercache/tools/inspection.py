"""Snapshots to a JSON file: what a fleet published (``python -m multilayercache inspect
--redis URL --prefix P --out FILE``), or a local cache's or L1's raw state
(``dump(cache_or_layer, path)``: every in-process layer's ``snapshot()``, with its sketch
table and its hot keys' hits and misses, and the cache's ``stats()``).

    from multilayercache.tools.inspection import dump
    dump(cache, "cache-snapshot.json")
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..analytics.globaltop import merge_top
from ..core.stats import LayerSnapshot
from ..layers.redis.fleetinfo import Client, read_fleet

FORMAT = "multilayercache-snapshot/1"


def fleet_snapshot(client: Client, prefix: str, top: int = 100) -> dict[str, Any]:
    """What every live instance of ``prefix``'s fleet published, and the fleet's ``top``
    hottest keys (accesses per minute), as plain data; ``LayerUnavailableError`` if the
    server cannot be reached."""
    reports, skipped, _ = read_fleet(client, prefix)
    return {
        "format": FORMAT,
        "kind": "fleet",
        "prefix": prefix,
        "read_at": time.time(),
        "instances": [report.as_dict() for report in reports],
        "skipped_fields": skipped,
        "global_top_keys": merge_top((report.top for report in reports), top),
    }


def local_snapshot(target: Any, hot_keys: int = 100) -> dict[str, Any]:
    """A cache's (``MultilayerCache`` or ``AsyncMultilayerCache``) or an ``InMemoryLayer``'s
    state as plain data: each in-process layer's ``snapshot(hot_keys)``, and the cache's
    ``stats()``."""
    layers = getattr(target, "layers", None)
    if layers is None:
        if not callable(getattr(target, "snapshot", None)):
            raise TypeError(f"expected a cache or an InMemoryLayer, got {type(target).__name__}")
        layers, stats = [target], None
    else:
        stats = target.stats()
    return {
        "format": FORMAT,
        "kind": "local",
        "taken_at": time.time(),
        "pid": os.getpid(),
        "layers": [
            _layer(layer.snapshot(hot_keys))
            for layer in layers
            if callable(getattr(layer, "snapshot", None))
        ],
        "stats": None if stats is None else _plain(stats),
    }


def dump(target: Any, path: str | os.PathLike[str], hot_keys: int = 100) -> Path:
    """Write ``local_snapshot(target)`` to ``path`` as JSON; the path written."""
    return write_json(local_snapshot(target, hot_keys), path)


def write_json(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``data`` to ``path`` (through a temporary file beside it, so that a reader
    never sees half of it)."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(data, indent=1, default=_plain) + "\n")
    partial.replace(target)
    return target


def _layer(snapshot: LayerSnapshot) -> dict[str, Any]:
    return {
        "stats": snapshot.stats.as_dict(),
        "sketch": {
            "words": [int(word) for word in np.asarray(snapshot.sketch).ravel()],
            "word_bits": 64,
            "counter_bits": 4,
            "additions": snapshot.sketch_additions,
            "sample_size": snapshot.sketch_sample_size,
        },
        "hot_keys": [
            {
                "key": _key_text(hot.key),
                "hits": hot.hits,
                "misses": hot.misses,
                "frequency": hot.frequency,
            }
            for hot in snapshot.hot_keys
        ],
        "window_max": snapshot.window_max,
        "protected_max": snapshot.protected_max,
        "region_weights": list(snapshot.region_weights),
    }


def _key_text(key: Any) -> str:
    if isinstance(key, str):
        return key
    text = getattr(key, "text", None)  # a @cached call's key
    return text if isinstance(text, str) else repr(key)


def _plain(value: Any) -> Any:
    """JSON for what ``json`` does not know: dataclasses, enums, numpy numbers, inf."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)
        }
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


__all__ = ["dump", "fleet_snapshot", "local_snapshot", "write_json"]
