"""One dead write as a record: what a dead-letter line holds, to and from JSON."""

from __future__ import annotations

import ast
import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ..core.writequeue import DeadWrite

FORMAT_VERSION = 2
"""Version 2 added ``written_ms``; version-1 lines are still read (``written_ms`` ``None``)."""
READABLE_VERSIONS = (1, 2)
OPS = ("set", "delete")
Encoding = Literal["base64", "json", "repr"]
Outcome = Literal["replayed", "kept", "expired", "older"] | None
"""What a replay's ``write`` returns: ``None`` or ``"replayed"`` (done: dropped from the
file), ``"kept"`` (not for this writer: left in the file), ``"expired"`` (its lifetime is
over: nothing to write, dropped), ``"older"`` (the layer holds something at least as new:
skipped, dropped). Raising counts as a failure: kept. ``True`` / ``False`` are read as
``"replayed"`` / ``"kept"``."""


@dataclass(frozen=True)
class DeadLetterRecord:
    """One dead write, as written to and read back from a dead-letter file (see the module
    docstring for the fields). Build one with ``create`` or ``of``."""

    key: str
    op: str
    value: Any
    encoding: Encoding | None
    error_type: str
    error_message: str
    attempts: int
    time: str
    layer: str
    key_repr: bool = False
    store_key: str | None = None
    px: int | None = None
    expires_at: float | None = None
    written_ms: int | None = None
    """When the write was made, as the cache acknowledged it (Unix epoch milliseconds, the
    clock of the process that made it); ``None`` if not known (a version-1 line, a
    persistence writer's record)."""

    @classmethod
    def create(
        cls,
        key: Any,
        op: str,
        value: Any,
        error: BaseException | str,
        attempts: int,
        layer: str,
        *,
        store_key: str | None = None,
        px: int | None = None,
        expires_at: float | None = None,
        written_ms: int | None = None,
        at: datetime | None = None,
    ) -> DeadLetterRecord:
        """A record of a write of ``key`` (``value``: bytes for a Redis layer, the value for
        a persistence writer; ignored for a delete) made at ``written_ms`` that failed with
        ``error``, given up at ``at`` (default: now)."""
        if op not in OPS:
            raise ValueError(f'op must be "set" or "delete", got {op!r}')
        text_key, key_repr = (key, False) if isinstance(key, str) else (repr(key), True)
        encoding: Encoding | None
        if op == "delete":
            value, encoding = None, None
        elif isinstance(value, (bytes, bytearray, memoryview)):
            value, encoding = bytes(value), "base64"
        elif _json_round_trips(value):
            encoding = "json"
        else:
            value, encoding = _safe_repr(value), "repr"
        if isinstance(error, BaseException):
            error_type, message = _type_name(error), str(error)
        else:
            error_type, message = "str", str(error)
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        return cls(
            key=text_key,
            op=op,
            value=value,
            encoding=encoding,
            error_type=error_type,
            error_message=message,
            attempts=attempts,
            time=moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            layer=layer,
            key_repr=key_repr,
            store_key=store_key,
            px=px,
            expires_at=expires_at,
            written_ms=written_ms,
        )

    @classmethod
    def of(cls, dead: DeadWrite, layer: str, **fields: Any) -> DeadLetterRecord:
        """The record of a ``DeadWrite`` (``WriteQueue``'s ``batch.dead``) of ``layer``.
        ``fields``: ``value`` (default: the write's payload), ``store_key``, ``px``,
        ``expires_at``, ``written_ms``, ``at``: what the layer knows of the payload it
        queued."""
        value = fields.pop("value", dead.payload)
        return cls.create(dead.key, dead.op, value, dead.error, dead.attempts, layer, **fields)

    def original_key(self) -> Any:
        """The cache key: ``key`` itself, or the literal its ``repr`` spells (``42``,
        ``('user', 1)``, ``b'k'``); ``ValueError`` for a repr that is no literal."""
        if not self.key_repr:
            return self.key
        try:
            return ast.literal_eval(self.key)
        except (ValueError, SyntaxError) as error:
            raise ValueError(f"key {self.key} is not a Python literal") from error

    def to_json(self) -> str:
        """The record as one JSON line (without the newline)."""
        value = self.value
        if self.encoding == "base64":
            value = base64.b64encode(value).decode("ascii")
        return json.dumps(
            {
                "time": self.time,
                "layer": self.layer,
                "op": self.op,
                "key": self.key,
                "key_repr": self.key_repr,
                "store_key": self.store_key,
                "attempts": self.attempts,
                "error": {"type": self.error_type, "message": self.error_message},
                "encoding": self.encoding,
                "value": value,
                "px": self.px,
                "expires_at": self.expires_at,
                "written_ms": self.written_ms,
                "v": FORMAT_VERSION,
            },
            ensure_ascii=False,
            separators=(", ", ": "),
        )

    @classmethod
    def from_json(cls, line: str | bytes) -> DeadLetterRecord:
        """Parse one line; ``ValueError`` naming what is wrong if it is not a record this
        version can replay: not JSON, a field missing, or an ``op`` or a format version it
        does not know (refused, never guessed at: an unknown op is not replayed as a SET)."""
        try:
            data = json.loads(line)
            version, op = data["v"], data["op"]
        except KeyError as error:
            raise ValueError(f"not a dead-letter record: no field {error}") from None
        except (ValueError, TypeError) as error:
            raise ValueError(f"not a dead-letter record: {error}") from None
        if isinstance(version, bool) or version not in READABLE_VERSIONS:
            raise ValueError(
                f"format version {version!r} is not one this version reads {READABLE_VERSIONS}"
            )
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}: this version replays only {OPS}")
        try:
            written_ms = data["written_ms"] if version >= 2 else None
            if written_ms is not None and (
                isinstance(written_ms, bool) or not isinstance(written_ms, int)
            ):
                raise TypeError(f"written_ms must be an integer or null, got {written_ms!r}")
            value = data["value"]
            if data["encoding"] == "base64":
                value = base64.b64decode(value, validate=True)
            failure = data["error"]
            return cls(
                key=data["key"],
                op=op,
                value=value,
                encoding=data["encoding"],
                error_type=failure["type"],
                error_message=failure["message"],
                attempts=data["attempts"],
                time=data["time"],
                layer=data["layer"],
                key_repr=data["key_repr"],
                store_key=data["store_key"],
                px=data["px"],
                expires_at=data["expires_at"],
                written_ms=written_ms,
            )
        except KeyError as error:
            raise ValueError(f"not a dead-letter record: no field {error}") from None
        except (ValueError, TypeError, binascii.Error) as error:
            raise ValueError(f"not a dead-letter record: {error}") from None


def _json_round_trips(value: Any) -> bool:
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError, RecursionError):
        return False


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception as error:  # a broken __repr__ must not lose the record
        return f"<{_type_name(value)} object: repr failed: {error}>"


def _type_name(obj: object) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
