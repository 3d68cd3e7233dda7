"""Bounds on untrusted MessagePack, checked before anything is decoded (pure-Python twin of
``msgpack_bounds.pyx``).

A decoder builds what the bytes describe. Whoever can write to a shared layer can describe a
value nested 100,000 deep (the decoder recurses and raises ``RecursionError``) or ten million
empty arrays in 10 MB (the decoder allocates ~64 bytes of Python objects per byte read).
``count_objects`` walks the MessagePack tokens instead, without building anything, and
refuses such data before a decoder sees it.

Each token is a marker byte, maybe a fixed-size length or value, maybe a payload. The walk
reads the marker, skips the length and payload of scalars (a 1 MB string costs as much as an
int: one step), and for an array or a map remembers how many objects it still owes (a map
of n entries owes 2n: keys and values). A stack holds what each open container still owes;
its height is the nesting depth. One object owed by a container is one object read later,
so the walk costs one step per object, whatever the data claims.

Two checks at a container's header keep the walk short whatever the data claims. A
container that claims more elements than bytes are left is truncated (each element takes
a byte at least). And every object counts against ``max_items`` as soon as it is
promised: a top-level one when its marker is read, the elements, keys and values of a
container when its header is read. So 10 MB of bytes that claim ten million elements are
refused at the first header, not after ten million steps. Each step reads one byte at
least, so the walk takes at most ``min(max_items, len(data))`` steps; what a decoder
builds from data that passes holds at most ``max_items`` objects, nested at most
``max_depth`` deep.

The format: https://github.com/msgpack/msgpack/blob/master/spec.md
"""

from __future__ import annotations

from ..core.errors import UntrustedDataError

# Marker bytes (MessagePack's "format" table) of tokens whose length is fixed: the marker
# then that many bytes of value.
_FIXED_SIZE = {
    0xC0: 0,  # nil
    0xC2: 0,  # false
    0xC3: 0,  # true
    0xCA: 4,  # float 32
    0xCB: 8,  # float 64
    0xCC: 1,  # uint 8
    0xCD: 2,  # uint 16
    0xCE: 4,  # uint 32
    0xCF: 8,  # uint 64
    0xD0: 1,  # int 8
    0xD1: 2,  # int 16
    0xD2: 4,  # int 32
    0xD3: 8,  # int 64
    0xD4: 2,  # fixext 1: type byte + 1
    0xD5: 3,  # fixext 2
    0xD6: 5,  # fixext 4
    0xD7: 9,  # fixext 8
    0xD8: 17,  # fixext 16
}

# Tokens with a payload: the width of their big-endian length field, and the extra bytes
# after it (the type byte of an ext).
_SIZED = {
    0xC4: (1, 0),  # bin 8
    0xC5: (2, 0),  # bin 16
    0xC6: (4, 0),  # bin 32
    0xC7: (1, 1),  # ext 8
    0xC8: (2, 1),  # ext 16
    0xC9: (4, 1),  # ext 32
    0xD9: (1, 0),  # str 8
    0xDA: (2, 0),  # str 16
    0xDB: (4, 0),  # str 32
}

# Containers with a length field: its width, and objects owed per element.
_CONTAINERS = {
    0xDC: (2, 1),  # array 16
    0xDD: (4, 1),  # array 32
    0xDE: (2, 2),  # map 16: a key and a value per entry
    0xDF: (4, 2),  # map 32
}


def count_objects(data: bytes | memoryview, start: int, max_depth: int, max_items: int) -> int:
    """How many complete MessagePack objects ``data[start:]`` holds, one after another.

    Raises ``UntrustedDataError`` naming what is wrong: the data is truncated or holds a
    marker that MessagePack never uses (0xc1) (cause ``"corrupt"``), nests containers
    deeper than ``max_depth``, or holds more than ``max_items`` objects in all (every
    element, key and value counts) (cause ``"limit"``).

    >>> count_objects(b"\\x01\\x92\\xa1a\\xc0", 0, max_depth=64, max_items=100)  # 1, ["a", None]
    2
    """
    view = memoryview(data).cast("B")
    end = len(view)
    if not 0 <= start <= end:
        raise ValueError(f"start={start} is outside the {end} bytes of data")
    position = start
    owed: list[int] = []  # per open container, the objects it still owes; len: the depth
    items = 0  # objects counted against max_items (read at the top level, or promised)
    objects = 0  # complete top-level objects
    while position < end:
        if owed:
            owed[-1] -= 1  # this token is one the innermost container promised
        else:
            items += 1  # a new top-level object
            if items > max_items:
                raise UntrustedDataError(_too_many(max_items), cause="limit")
        marker = view[position]
        position += 1
        children = 0
        is_container = False
        if marker <= 0x7F or marker >= 0xE0:  # positive and negative fixint
            pass
        elif marker <= 0x8F:  # fixmap
            children, is_container = 2 * (marker & 0x0F), True
        elif marker <= 0x9F:  # fixarray
            children, is_container = marker & 0x0F, True
        elif marker <= 0xBF:  # fixstr
            position += marker & 0x1F
        elif marker in _FIXED_SIZE:
            position += _FIXED_SIZE[marker]
        elif marker in _SIZED:
            width, extra = _SIZED[marker]
            position += width + extra + _length(view, position, width, end)
        elif marker in _CONTAINERS:
            width, per_element = _CONTAINERS[marker]
            children, is_container = per_element * _length(view, position, width, end), True
            position += width
        else:
            raise UntrustedDataError(_never_used(marker, position - 1))
        if position > end:
            raise UntrustedDataError(_truncated(end))
        if is_container:
            if len(owed) >= max_depth:
                raise UntrustedDataError(_too_deep(max_depth), cause="limit")
            if children > end - position:  # each takes a byte at least: a lie, not a limit
                raise UntrustedDataError(_truncated(end))
            if children:
                items += children
                if items > max_items:
                    raise UntrustedDataError(_too_many(max_items), cause="limit")
                owed.append(children)
        while owed and owed[-1] == 0:  # the token completed these containers
            owed.pop()
        if not owed:
            objects += 1
    if owed:
        raise UntrustedDataError(_truncated(end))
    return objects


def _length(view: memoryview, position: int, width: int, end: int) -> int:
    """The big-endian length field of ``width`` bytes at ``position``."""
    if position + width > end:
        raise UntrustedDataError(_truncated(end))
    return int.from_bytes(view[position : position + width], "big")


# The messages, shared with the compiled twin so that both say the same.
def _too_deep(max_depth: int) -> str:
    return f"MessagePack data nested deeper than max_depth={max_depth}"


def _too_many(max_items: int) -> str:
    return f"MessagePack data holds more than max_items={max_items} objects"


def _truncated(end: int) -> str:
    return f"truncated MessagePack data: it ends inside an object (at byte {end})"


def _never_used(marker: int, at: int) -> str:
    return f"corrupt MessagePack data: 0x{marker:02x} is never used (at byte {at})"
