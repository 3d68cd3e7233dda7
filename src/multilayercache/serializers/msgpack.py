"""``MsgpackSerializer``, the safe default: MessagePack via msgspec.

Decoding builds plain data only, so nothing in Redis can make it run code.

**With a declared type** (``value_type=`` on the cache, on ``get_or_load``, or the return
annotation of a ``@cached`` function), values come back as that type: msgspec's typed
decoding handles tuples, sets, frozensets, ``datetime`` (naive and aware), ``date``,
``time``, ``timedelta``, ``Decimal``, ``UUID``, enums, dataclasses, ``msgspec.Struct``, and
any nesting of them (``list[tuple[int, str]]``, ``dict[str, set[UUID]]``, ...); pydantic
models (and types containing them) go through pydantic's own ``TypeAdapter`` when pydantic
is installed. Stored data that does not fit the declared type is not trusted: it reads as a
miss (and an error in the layer's stats), so a changed schema reloads instead of failing.

**Without a declared type**, what comes back is MessagePack's data model:

=====================================  ==============================================
stored                                 read back from a shared layer
=====================================  ==============================================
None, bool, int, float, str, bytes     the same
list, tuple, set, frozenset            list
dict                                   dict
dataclass, msgspec Struct              dict of its fields
pydantic model                         dict of its fields, in JSON mode
aware datetime                         datetime in UTC
naive datetime, date, time, timedelta  ISO 8601 str
Decimal, UUID                          str
enum member                            its value
=====================================  ==============================================

Ints must fit in 64 bits (-2**63 .. 2**64 - 1); larger ones raise ``SerializationError``
(store them as str, or use ``SignedPickleSerializer``). Objects MessagePack cannot represent
(a socket, a lock, ...) raise ``SerializationError``.

**Bounded decoding.** Whoever can write to Redis can send bytes that describe a value nested
100,000 deep (a decoder recurses until ``RecursionError``) or ten million empty arrays in
10 MB (~750 MB of Python objects). Every read is first walked by a scanner
(``_core/msgpack_bounds``: compiled, one step per object, nothing built) that refuses data
nested deeper than ``max_depth`` or holding more than ``max_items`` objects, with an
``UntrustedDataError`` naming the limit, before msgspec decodes anything. ``dumps`` refuses
such values too (``SerializationError``), so a value that could be written but never read
back is found at once.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from .._build import twin
from ..core.errors import SerializationError, UntrustedDataError
from .base import MSGPACK_TAG

if TYPE_CHECKING:  # the twin carries the annotations; the compiled module shares them
    from .._core import _msgpack_bounds_py as _bounds
else:
    _bounds = twin(
        "multilayercache._core.msgpack_bounds", "multilayercache._core._msgpack_bounds_py"
    )
count_objects = _bounds.count_objects

MSGPACK_TAG_VALUE = 1  # the tag byte read as MessagePack: a positive fixint


class _TypedCodec:
    """How values of one declared type are encoded and decoded."""

    __slots__ = ("prepare", "decode")

    def __init__(self, prepare: Callable[[Any], Any], decode: Callable[[Any], Any]) -> None:
        self.prepare = prepare  # value -> what msgspec encodes
        self.decode = decode  # bytes (without the tag) -> value


class MsgpackSerializer:
    """The safe default: MessagePack via msgspec (see the module docstring).

    ``max_depth``: how deeply containers may nest in a value (``[[1]]`` is 2 deep).
    ``max_items``: how many objects a value may hold in all: every element of a list, and
    every key and every value of a dict, at any depth, counts one. Reads beyond either are
    refused (``UntrustedDataError``, a miss in a cache), and so are writes
    (``SerializationError``).

    The defaults are meant to be met by no honest value. ``MAX_DEPTH = 64``: documents
    services cache (API responses, Kubernetes objects, GraphQL results) nest 5 to 20 deep;
    64 leaves three times that, and stays far below the interpreter's recursion limit
    (1,000 frames, which a decoder shares with the caller's own stack).
    ``MAX_ITEMS = 1_000_000``: a value that holds a million objects is megabytes that take
    tens of milliseconds to decode, too large to be one cache entry. It bounds what a
    forged value can cost a read: a million empty lists (the worst case: ~70 bytes of
    Python objects per byte read, and the garbage collector walks them) cost ~70 MB and
    ~0.5 s, where ten million cost ~750 MB and 5 s before. Lower it where values are known
    to be small (``benchmarks/bounded_decoding.py`` measures both sides).

    >>> serializer = MsgpackSerializer()
    >>> serializer.loads(serializer.dumps((1, "a")), value_type=tuple[int, str])
    (1, 'a')
    >>> serializer.loads(b"\\x01" + b"\\x91" * 100 + b"\\x90")
    Traceback (most recent call last):
      ...
    multilayercache.core.errors.UntrustedDataError: MessagePack data nested deeper than max_depth=64
    """

    MAX_DEPTH = 64
    MAX_ITEMS = 1_000_000

    def __init__(self, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS) -> None:
        self.max_depth = _positive_int("max_depth", max_depth)
        self.max_items = _positive_int("max_items", max_items)
        self._encode = msgspec.msgpack.Encoder(enc_hook=_plain_data).encode
        self._decode = msgspec.msgpack.Decoder().decode
        self._typed: dict[Any, _TypedCodec] = {}

    def dumps(self, value: Any, value_type: Any = None) -> bytes:
        """``value`` as bytes (``value_type``: what it will be read back as)."""
        try:
            if value_type is not None:
                value = self._codec_for(value_type).prepare(value)
            data = MSGPACK_TAG + self._encode(value)
        except OverflowError:
            raise SerializationError(
                f"cannot encode this {type(value).__name__} with MessagePack: it holds an int "
                "beyond 64 bits (-2**63 .. 2**64-1); store it as a str, or use "
                "SignedPickleSerializer(key=...)"
            ) from None
        except (TypeError, ValueError) as error:
            raise SerializationError(
                f"cannot encode a value of type {type(value).__qualname__!r} with MessagePack "
                f"({error}); store plain data, or use SignedPickleSerializer(key=...)"
            ) from None
        except RecursionError:
            raise SerializationError(
                f"cannot encode this {type(value).__name__} with MessagePack: it nests too "
                f"deep (max_depth={self.max_depth})"
            ) from None
        try:
            count_objects(data, 1, self.max_depth, self.max_items)
        except UntrustedDataError as beyond:
            raise SerializationError(
                f"this {type(value).__name__} could not be read back: {beyond}; store a "
                "smaller value, or raise the limit (MsgpackSerializer(max_depth=..., "
                "max_items=...))"
            ) from None
        return data

    def loads(self, data: bytes, value_type: Any = None) -> Any:
        """The value stored as ``data`` (as ``value_type`` when given). Raises
        ``UntrustedDataError`` for data that is not one MessagePack value within the
        bounds, or not a ``value_type``."""
        if data[:1] != MSGPACK_TAG:
            raise UntrustedDataError("not MessagePack data written by multilayercache")
        found = count_objects(data, 1, self.max_depth, self.max_items)
        if found != 1:
            raise UntrustedDataError(
                f"corrupt MessagePack data: {found} objects after the tag, not one value"
            )
        payload = memoryview(data)[1:]
        try:
            if value_type is None:
                return self._decode(payload)
            return self._codec_for(value_type).decode(payload)
        except RecursionError:  # defence in depth: the scanner bounds the depth first
            raise UntrustedDataError(_TOO_DEEP_TO_DECODE, cause="limit") from None
        except msgspec.ValidationError as error:
            raise UntrustedDataError(
                f"stored value is not a {_name(value_type)}: {error}", cause="wrong_type"
            ) from None
        except msgspec.DecodeError as error:
            raise UntrustedDataError(f"corrupt MessagePack data: {error}") from None
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            raise UntrustedDataError(
                f"stored value is not a {_name(value_type)}: {error}", cause="wrong_type"
            ) from None

    @property
    def untyped_encode(self) -> Callable[[Any], bytes]:
        """msgspec's encoder of MessagePack's data model, without the tag or the bounds:
        for a caller that adds and checks both itself (a write, ``_core/_envelope_write_py``)."""
        return self._encode

    @property
    def untyped_decode(self) -> Callable[[Any], Any]:
        """msgspec's decoder of MessagePack's data model, without the tag or the bounds:
        for a caller that checks both first (a batch read, ``_core/_envelope_batch_py``)."""
        return self._decode

    def loads_many(self, items: list[bytes], value_type: Any = None) -> list[Any]:
        """Decode many values. Untyped, in one msgspec call: the tag byte is itself a
        MessagePack object (the integer 1), so each item is two objects, and the items
        joined behind an array header are an array of tag, value, tag, value... Each item
        is first checked on its own (two objects, within the bounds), so that no item's
        bytes can run into the next one's. If any item is not valid, raise
        ``UntrustedDataError`` (callers fall back to ``loads`` per item)."""
        if value_type is not None:
            return [self.loads(item, value_type) for item in items]
        self._check_each(items, 2)
        count = len(items)
        joined = b"\xdd" + (2 * count).to_bytes(4, "big") + b"".join(items)  # array 32
        try:
            decoded: list[Any] = self._decode(joined)  # an array: tag, value, tag, value ...
        except msgspec.DecodeError as error:
            raise UntrustedDataError(f"corrupt MessagePack data: {error}") from None
        except RecursionError:
            raise UntrustedDataError(_TOO_DEEP_TO_DECODE, cause="limit") from None
        if decoded[0::2].count(MSGPACK_TAG_VALUE) != count:
            raise UntrustedDataError("not MessagePack data written by multilayercache")
        return decoded[1::2]

    def loads_sequence(self, items: list[bytes], objects_per_item: int) -> list[Any] | None:
        """The MessagePack objects of many items (each exactly ``objects_per_item`` of
        them, e.g. an envelope's header, the tag and the value), decoded in one msgspec
        call; ``None`` if they do not parse that way, or one is beyond the bounds (callers
        then go item by item, and refuse only that one). Each item is checked on its own
        first: an item cannot end inside the next one, nor take objects from it."""
        try:
            self._check_each(items, objects_per_item)
        except UntrustedDataError:
            return None
        total = objects_per_item * len(items)
        joined = b"\xdd" + total.to_bytes(4, "big") + b"".join(items)  # array 32
        try:
            decoded: list[Any] = self._decode(joined)  # one array of all their objects
        except (msgspec.DecodeError, RecursionError):
            return None
        return decoded

    def _check_each(self, items: list[bytes], objects_per_item: int) -> None:
        """Raise ``UntrustedDataError`` unless each item holds exactly ``objects_per_item``
        MessagePack objects, within the bounds."""
        max_depth, max_items = self.max_depth, self.max_items
        for item in items:
            if count_objects(item, 0, max_depth, max_items) != objects_per_item:
                raise UntrustedDataError(
                    f"corrupt MessagePack data: an item does not hold {objects_per_item} objects"
                )

    def _codec_for(self, value_type: Any) -> _TypedCodec:
        codec = self._typed.get(value_type)
        if codec is None:
            codec = self._typed[value_type] = _typed_codec(value_type, self._decode)
        return codec


_TOO_DEEP_TO_DECODE = "MessagePack data nested too deep to decode here (RecursionError)"


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    # The compiled scanner counts in 64 bits; beyond 2**62 a bound is no bound anyway.
    return min(value, 2**62)


def _typed_codec(value_type: Any, decode_untyped: Callable[[Any], Any]) -> _TypedCodec:
    if _mentions_pydantic(value_type):
        from pydantic import TypeAdapter

        adapter = TypeAdapter(value_type)
        # JSON mode turns every value into plain data, which pydantic parses back on read.
        return _TypedCodec(
            lambda value: adapter.dump_python(value, mode="json"),
            lambda payload: adapter.validate_python(decode_untyped(payload)),
        )
    try:
        decoder = msgspec.msgpack.Decoder(value_type)
    except TypeError as unsupported:
        raise TypeError(f"value_type {_name(value_type)} is not supported: {unsupported}") from None
    return _TypedCodec(_unchanged, decoder.decode)


def _mentions_pydantic(value_type: Any) -> bool:
    """Whether ``value_type`` is, or contains, a pydantic model (``list[User]``, ...)."""
    if isinstance(value_type, type):
        return any(cls.__module__.startswith("pydantic") for cls in value_type.__mro__[1:])
    return any(_mentions_pydantic(argument) for argument in typing.get_args(value_type))


def _plain_data(value: Any) -> Any:
    """What MessagePack stores for an object it does not know, without a declared type: a
    pydantic model as its fields (JSON mode, as a dataclass is stored); nothing else."""
    if _is_pydantic_model(value):
        return value.model_dump(mode="json")
    # A TypeError, which ``dumps`` turns into ``SerializationError``: msgspec passes the
    # hook's exceptions through as they are, NotImplementedError included.
    raise TypeError(f"objects of type {type(value).__qualname__} are not supported")


def _unchanged(value: Any) -> Any:
    return value


def _is_pydantic_model(value: Any) -> bool:
    return _mentions_pydantic(type(value))


def _name(value_type: Any) -> str:
    return getattr(value_type, "__name__", None) or repr(value_type)
