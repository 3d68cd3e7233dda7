"""The atomic operations of both Redis layers, as Lua scripts (IO-free: the scripts, their
arguments and what their answers mean; ``sync.py`` and ``aio.py`` send them).

Every value in Redis carries its envelope (``core/entry.py``): 49 bytes of header (60 for
a loaded value with its adaptive step), then the serializer's bytes. An operation that
reads and writes a key in one step is a script, run atomically by Redis, one key each (so
cluster-safe):

* ``ADD``: store only if the key holds no fresh value (none at all, or one past its fresh
  deadline: what ``get`` would miss), so that exactly one of concurrent adders wins.
* ``TOUCH``: give a fresh value a new lifetime without rewriting it: the refresh, stale and
  gone deadlines in its header are overwritten in place (``SETRANGE``), then its expiry
  (``PEXPIRE`` / ``PERSIST``); the bytes of the value and when it was written stay.
* ``RESEAL``: replace a value with the same value sealed under another key (``reencrypt``),
  only if the key still holds what was read, keeping its expiry.
* ``INCR``: add to a counter, keeping its lifetime (``KEEPTTL``, and the header's
  deadlines); a missing (or stale) key starts at 0, as Redis' own ``INCRBY`` does, with the
  lifetime given. A counter is stored as any integer value of the MessagePack serializer
  (the envelope, 0x01, a MessagePack integer), so every read decodes it; Lua's numbers are
  doubles, so a counter must stay within +-(2**53 - 1) (beyond, the script refuses).

Times are the writer's wall clock in epoch milliseconds, as in every envelope.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, NamedTuple

from ...core.entry import (
    FIRST_BYTE,
    FORMAT_VERSION,
    HEADER_SIZE,
    STEPPED_FIRST_BYTE,
    STEPPED_HEADER_SIZE,
    STEPPED_VERSION,
    Deltas,
    key_check,
    wrap_at,
)

COUNTER_LIMIT = 2**53
"""Counters stay strictly within +-COUNTER_LIMIT: Lua's numbers are doubles, exact below."""

NOT_AN_INTEGER = "NOTINT"
"""The error code of ``INCR`` on a value that is not an integer."""
OVERFLOW = "OVERFLOW"
"""The error code of ``INCR`` past ``COUNTER_LIMIT``."""

# Shared by the scripts: ``header_size(data)``, the length of ``data``'s envelope (``nil``
# for data without one of this version: ``get`` reads it as a miss); ``fresh(data, now)``,
# whether ``data`` is a value that ``get`` would return at ``now`` (enveloped and before
# its stale deadline).
_HELPERS = f"""
local function header_size(data)
  local first, version = string.byte(data, 1, 2)
  if first == {FIRST_BYTE} and version == {FORMAT_VERSION} and #data >= {HEADER_SIZE} then
    return {HEADER_SIZE}
  end
  if first == {STEPPED_FIRST_BYTE} and version == {STEPPED_VERSION}
      and #data >= {STEPPED_HEADER_SIZE} then
    return {STEPPED_HEADER_SIZE}
  end
  return nil
end
local function fresh(data, now)
  if not header_size(data) then return false end
  local stale = struct.unpack('>i8', data, 22)
  return stale == -1 or stale > now
end
"""

# KEYS[1]; ARGV: now (ms), the encoded value, PX ("": no expiry, "0": over already).
ADD_SCRIPT = (
    _HELPERS
    + """
local current = redis.call('GET', KEYS[1])
local now = tonumber(ARGV[1])
if current and fresh(current, now) then return 0 end
if ARGV[3] == '0' then
  if current then redis.call('DEL', KEYS[1]) end
elseif ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""
)

# KEYS[1]; ARGV: now (ms), the header's bytes 11..37 (three 0xd3 + int64: refresh, stale,
# gone), PX ("": no expiry, "0": over already: the key is deleted).
TOUCH_SCRIPT = (
    _HELPERS
    + """
local current = redis.call('GET', KEYS[1])
if not current or not fresh(current, tonumber(ARGV[1])) then return 0 end
if ARGV[3] == '0' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('SETRANGE', KEYS[1], 11, ARGV[2])
if ARGV[3] == '' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 1
"""
)

# KEYS[1]; ARGV: now (ms), delta, now as 8 bytes (the new written_ms), the header of a new
# counter (49 bytes), its PX ("": no expiry). Answers the new count.
INCR_SCRIPT = (
    _HELPERS
    + f"""
local function count_in(payload)
  -- The MessagePack serializer's tag (0x01), then an integer: a fixint or 0xcc..0xd3.
  local kind = string.byte(payload, 2)
  if string.byte(payload, 1) ~= 0x01 or not kind
      or not (kind <= 0x7f or kind >= 0xe0 or (kind >= 0xcc and kind <= 0xd3)) then
    return nil
  end
  local ok, count = pcall(cmsgpack.unpack, string.sub(payload, 2))
  if ok and type(count) == 'number' then return count end
  return nil
end
local function checked(count)
  if count >= {COUNTER_LIMIT} or count <= -{COUNTER_LIMIT} then
    return redis.error_reply('{OVERFLOW} the counter would leave +-2^53')
  end
end
local current = redis.call('GET', KEYS[1])
local now = tonumber(ARGV[1])
local delta = tonumber(ARGV[2])
if current and fresh(current, now) then
  local size = header_size(current)
  if string.byte(current, size) ~= 0x90 then
    return redis.error_reply('{NOT_AN_INTEGER} the value is not a counter (it has tags)')
  end
  local header = string.sub(current, 1, 3) .. ARGV[3] .. string.sub(current, 12, size)
  local payload = string.sub(current, size + 1)
  local count = count_in(payload)
  if count == nil then
    return redis.error_reply('{NOT_AN_INTEGER} the value is not an integer')
  end
  count = count + delta
  local refused = checked(count)
  if refused then return refused end
  redis.call('SET', KEYS[1], header .. '\\1' .. cmsgpack.pack(count), 'KEEPTTL')
  return count
end
local refused = checked(delta)
if refused then return refused end
local data = ARGV[4] .. '\\1' .. cmsgpack.pack(delta)
if ARGV[5] == '' then
  redis.call('SET', KEYS[1], data)
else
  redis.call('SET', KEYS[1], data, 'PX', ARGV[5])
end
return delta
"""
)

# KEYS[1]; ARGV: the value as it was read, the value to write instead. Writes only if the key
# still holds the first (a newer write is never undone), keeping the key's expiry.
RESEAL_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""


class Script(NamedTuple):
    """A Lua script and its SHA1 (sent as ``EVALSHA``; as ``EVAL`` once if the server has
    not seen it)."""

    text: str
    sha: str

    @classmethod
    def of(cls, text: str) -> Script:
        return cls(text, hashlib.sha1(text.encode()).hexdigest())


ADD = Script.of(ADD_SCRIPT)
TOUCH = Script.of(TOUCH_SCRIPT)
INCR = Script.of(INCR_SCRIPT)
RESEAL = Script.of(RESEAL_SCRIPT)


class ScriptCall(NamedTuple):
    """One run of ``script`` on ``redis_key`` with ``args``; ``operation`` names it in
    errors."""

    operation: str
    script: Script
    redis_key: str
    args: tuple[Any, ...]


def px_argument(milliseconds: int | None) -> str | int:
    """A script's PX argument: "" for no expiry."""
    return "" if milliseconds is None else milliseconds


def add_call(redis_key: str, now_ms: int, data: bytes, milliseconds: int | None) -> ScriptCall:
    return ScriptCall("ADD", ADD, redis_key, (now_ms, data, px_argument(milliseconds)))


def touch_call(
    redis_key: str, now_ms: int, lifetime: Deltas, milliseconds: int | None
) -> ScriptCall:
    deadlines = wrap_at(now_ms, lifetime, 0.0, 0, b"")[11:38]  # refresh, stale, gone
    return ScriptCall("TOUCH", TOUCH, redis_key, (now_ms, deadlines, px_argument(milliseconds)))


def incr_call(
    redis_key: str, now_ms: int, delta: int, lifetime: Deltas, milliseconds: int | None
) -> ScriptCall:
    header = wrap_at(now_ms, lifetime, 0.0, key_check(redis_key), b"")
    written = struct.pack(">q", now_ms)
    args = (now_ms, delta, written, header, px_argument(milliseconds))
    return ScriptCall("INCR", INCR, redis_key, args)


def reseal_call(redis_key: str, old: bytes, new: bytes) -> ScriptCall:
    return ScriptCall("REENCRYPT", RESEAL, redis_key, (old, new))


def checked_delta(delta: Any) -> int:
    """``delta`` of ``incr`` / ``decr``: an int (not a bool) within the counters' range."""
    if type(delta) is not int:
        raise TypeError(f"delta must be an int, got {type(delta).__name__} {delta!r}")
    if not -COUNTER_LIMIT < delta < COUNTER_LIMIT:
        raise OverflowError(f"delta must be within +-(2**53 - 1), got {delta}")
    return delta


def script_error(message: str) -> Exception | None:
    """The exception a caller gets for a script's refusal (``None``: not one of ours)."""
    if message.startswith(NOT_AN_INTEGER):
        return TypeError(f"incr: {message[len(NOT_AN_INTEGER) + 1 :]}")
    if message.startswith(OVERFLOW):
        return OverflowError(f"incr: {message[len(OVERFLOW) + 1 :]}")
    return None
