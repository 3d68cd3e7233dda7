"""What one instance publishes about itself for the fleet's view (``global_top_keys``,
``python -m multilayercache top``, ``inspect``), and how it is read back.

One Redis hash per instance (``layers/redis/fleetinfo.py`` says where and for how long):

* field ``i``: the instance (id, host, pid, when published, publish period) and a small
  summary per layer (hits, misses, hit ratio, size, breaker state, write-behind queue
  depth), as JSON;
* one field ``k:<key>`` per hot key (at most ``MAX_PUBLISHED_KEYS``): the key as the shared
  layer stores it (its text, without the prefix; never a value), and its recent rate in
  accesses per second, as ASCII.

What is read back is untrusted: anything could have written the hash. A field that does
not parse (bad UTF-8, bad JSON, a number that is not a finite rate, a key too long, more
fields than an instance publishes) is skipped and counted, never raised; the rest of the
hash is used.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.stats import CacheStats
from .globaltop import MAX_PUBLISHED_KEYS

FORMAT_VERSION = 1
INFO_FIELD = b"i"
KEY_FIELD_PREFIX = b"k:"
MAX_KEY_BYTES = 512
"""Longer keys are not published (a hot key is rarely that long; the hash stays small)."""
MAX_INFO_BYTES = 16_384
MAX_LAYERS = 16
MAX_RATE = 1e9
"""Accesses per second above this are not believed."""
MAX_FIELDS = MAX_PUBLISHED_KEYS + 8
"""Fields read of one hash at most: what an instance publishes, and a little slack."""


@dataclass(frozen=True)
class LayerSummary:
    """One layer of one instance, as the fleet's view shows it."""

    name: str
    hits: int = 0
    misses: int = 0
    hit_ratio: float = 0.0
    size: int | None = None
    breaker: str | None = None
    """The circuit breaker's state (``closed``, ``open``, ``half_open``); ``None``: none."""
    breaker_opened: int = 0
    queue_depth: int | None = None
    """Writes held by the write-behind queue; ``None``: the layer writes through."""
    errors: int = 0


@dataclass(frozen=True)
class InstanceReport:
    """What one instance published."""

    instance: str
    host: str = "?"
    pid: int = 0
    published_at: float = 0.0
    """Epoch seconds, by the instance's clock."""
    period_seconds: float = 0.0
    layers: tuple[LayerSummary, ...] = ()
    top: dict[str, float] = field(default_factory=dict)
    """Hot keys (the shared layer's text of each) and their recent accesses per second."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(stats: CacheStats) -> tuple[LayerSummary, ...]:
    """Each layer's summary from a manager's ``stats()``."""
    summaries = []
    for layer in stats.layers:
        breaker = stats.breakers.get(layer.name)
        queue = stats.write_queues.get(layer.name)
        summaries.append(
            LayerSummary(
                name=layer.name,
                hits=layer.hits,
                misses=layer.misses,
                hit_ratio=layer.hit_ratio,
                size=layer.size,
                breaker=None if breaker is None else breaker.state.value,
                breaker_opened=0 if breaker is None else breaker.opened,
                queue_depth=None if queue is None else queue.depth,
                errors=stats.read_errors.get(layer.name, 0) + stats.write_errors.get(layer.name, 0),
            )
        )
    return tuple(summaries)


def encode(report: InstanceReport) -> dict[bytes, bytes]:
    """The hash fields of ``report`` (its ``top`` trimmed to the hottest
    ``MAX_PUBLISHED_KEYS``)."""
    info = {
        "v": FORMAT_VERSION,
        "instance": report.instance,
        "host": report.host,
        "pid": report.pid,
        "at": report.published_at,
        "period": report.period_seconds,
        "layers": [asdict(layer) for layer in report.layers[:MAX_LAYERS]],
    }
    fields = {INFO_FIELD: json.dumps(info, separators=(",", ":")).encode()}
    encoded = ((key.encode("utf-8", "surrogatepass"), rate) for key, rate in report.top.items())
    publishable = [(data, rate) for data, rate in encoded if len(data) <= MAX_KEY_BYTES]
    for data, rate in heapq.nlargest(MAX_PUBLISHED_KEYS, publishable, key=lambda item: item[1]):
        fields[KEY_FIELD_PREFIX + data] = repr(float(rate)).encode()
    return fields


def decode(instance: str, fields: Mapping[bytes, bytes]) -> tuple[InstanceReport, int]:
    """The report in ``fields`` (a hash read back) and how many fields were skipped as
    untrusted (see the module docstring)."""
    skipped = max(0, len(fields) - MAX_FIELDS)
    top: dict[str, float] = {}
    info: dict[str, Any] | None = None
    for name, value in list(fields.items())[:MAX_FIELDS]:
        if name == INFO_FIELD:
            info = _info(value)
            skipped += info is None
        elif name.startswith(KEY_FIELD_PREFIX):
            key, rate = _key(name[len(KEY_FIELD_PREFIX) :]), _rate(value)
            if key is None or rate is None:
                skipped += 1
            else:
                top[key] = rate
        else:
            skipped += 1
    if info is None:
        return InstanceReport(instance, top=top), skipped
    layers = []
    for layer in info["layers"]:
        summary = _layer(layer)
        if summary is None:
            skipped += 1
        else:
            layers.append(summary)
    report = InstanceReport(
        instance,
        host=info["host"],
        pid=info["pid"],
        published_at=info["at"],
        period_seconds=info["period"],
        layers=tuple(layers),
        top=top,
    )
    return report, skipped


def _key(data: bytes) -> str | None:
    if not data or len(data) > MAX_KEY_BYTES:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _rate(data: bytes) -> float | None:
    if len(data) > 32:
        return None
    try:
        rate = float(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return rate if 0.0 <= rate <= MAX_RATE else None  # also refuses nan and inf


def _info(data: bytes) -> dict[str, Any] | None:
    """The instance's JSON, with every field of the expected type, or ``None``."""
    if len(data) > MAX_INFO_BYTES:
        return None
    try:
        info = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(info, dict) or info.get("v") != FORMAT_VERSION:
        return None
    checks: dict[str, tuple[type, ...]] = {
        "host": (str,),
        "pid": (int,),
        "at": (int, float),
        "period": (int, float),
        "layers": (list,),
    }
    for name, kind in checks.items():
        value = info.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
    info["layers"] = info["layers"][:MAX_LAYERS]
    return info


def _layer(data: Any) -> LayerSummary | None:
    if not isinstance(data, dict):
        return None
    expected: dict[str, tuple[type, ...]] = {
        "name": (str,),
        "hits": (int,),
        "misses": (int,),
        "hit_ratio": (int, float),
        "size": (int, type(None)),
        "breaker": (str, type(None)),
        "breaker_opened": (int,),
        "queue_depth": (int, type(None)),
        "errors": (int,),
    }
    values: dict[str, Any] = {}
    for name, kinds in expected.items():
        value = data.get(name)
        if not isinstance(value, kinds) or isinstance(value, bool):
            return None
        if isinstance(value, float) and not math.isfinite(value):
            return None
        values[name] = value
    return LayerSummary(**values)


__all__ = [
    "FORMAT_VERSION",
    "MAX_KEY_BYTES",
    "InstanceReport",
    "LayerSummary",
    "decode",
    "encode",
    "summarise",
]
