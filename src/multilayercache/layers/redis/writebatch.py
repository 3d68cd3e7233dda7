"""A write-behind batch as one command: the SETs and DELs of a batch sent to one Redis
server as a single Lua script call, which answers once (IO-free: the script and its
arguments; ``sync.py`` and ``aio.py`` send them).

Sent as a pipeline, every write of a batch costs the sender Python twice: packing its
command, and parsing its reply through redis-py (about 2 us per write in all; 8-9 us under
asyncio, where every reply runs a timeout of its own). The sender shares the GIL with the
threads that call ``set()``, so that Python is theirs to wait for. Here a batch becomes five
arguments packed in one compiled pass (``_core/write_batch.pyx``; its pure twin uses
whole-batch joins and ``struct`` packs): tens of nanoseconds per write, then one reply.

The work moves to the server: a ``redis.call`` per write costs Redis about 2 us of CPU per
write, against about 1 us for a pipeline of SETs (valkey 8.1 on a 2-core machine: the
server process's CPU over 400 batches). A call of 500 writes holds the server for about
1 ms (a pipeline of 500 is read and run in a few chunks of 16 KB of commands); longer
batches are cut into calls of at most ``SCRIPT_WRITES``.

A server that refuses scripts (an ACL without ``@scripting``) gets the same batches as
commands from then on (``scripts_refused``; logged once): a batch that is not late needs
no script there.

The script declares no keys: on one server it need not (ACLs still check each key as it
is written), and declaring them would cost one argument each. What goes as commands
instead (``codec.write_commands``): a cluster, whose keys lie in many slots; writes sent
only over older values (a late batch or a write recovered from a journal: the
compare-and-write script, key by key); and a batch with a key that holds a NUL character
(the script's keys are NUL-terminated).

Each write's expiry goes as the deadline it was encoded with (``PackedWrite.expires_at``),
with the sender's clock now: the script sets what is left of it, or deletes the key when
nothing is left, as ``PackedWrite.command`` does.
"""

from __future__ import annotations

import time
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple

from ..._build import twin
from .scripts import Script

if TYPE_CHECKING:
    # the twin carries the annotations; the compiled module shares them
    from ..._core import _write_batch_py as _packing
    from .codec import PackedWrite
else:
    _packing = twin("multilayercache._core.write_batch", "multilayercache._core._write_batch_py")

DELETE = _packing.DELETE
NO_EXPIRY = _packing.NO_EXPIRY

SCRIPT_WRITES = 500
"""Writes per script call at most: about 1 ms of the server's time."""


# ARGV: now (Unix seconds), the keys (each ended by a NUL byte), the values end to end,
# then per write, little-endian: the length of its value (int32; -1: a delete) and its
# deadline (double, Unix seconds; 0: no expiry). Whatever is left of a deadline in whole
# milliseconds, rounded up, is its PX; nothing left: the key is deleted.
WRITE_BATCH_SCRIPT = f"""
local now = tonumber(ARGV[1])
local keys, values, value_lengths, deadlines = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key_at, value_at = 1, 1
for i = 0, #value_lengths / 4 - 1 do
  local key_end = string.find(keys, '\\0', key_at, true)
  local key = string.sub(keys, key_at, key_end - 1)
  key_at = key_end + 1
  local value_length = struct.unpack('<i4', value_lengths, 4 * i + 1)
  if value_length == {DELETE} then
    redis.call('DEL', key)
  else
    local value = string.sub(values, value_at, value_at + value_length - 1)
    value_at = value_at + value_length
    local deadline = struct.unpack('<d', deadlines, 8 * i + 1)
    if deadline == {NO_EXPIRY} then
      redis.call('SET', key, value)
    else
      local left = math.ceil((deadline - now) * 1000)
      if left > 0 then
        redis.call('SET', key, value, 'PX', left)
      else
        redis.call('DEL', key)
      end
    end
  end
end
return #value_lengths / 4
"""

WRITE_BATCH = Script.of(WRITE_BATCH_SCRIPT)


class ScriptBatch(NamedTuple):
    """A batch as script calls: the arguments of each ``WRITE_BATCH`` call (one per
    ``SCRIPT_WRITES`` writes), and how many of its writes are sets (the layer's ``puts``)."""

    calls: list[tuple[Any, ...]]
    sets: int


def script_batch(writes: list[PackedWrite]) -> ScriptBatch | None:
    """``writes`` as ``WRITE_BATCH`` calls, or ``None`` when they must go as commands: a
    write only over an older value (``only_if_newer``), or a key holding a NUL character.
    Keys are distinct (a write-behind batch holds one write per key), so the calls may
    run in any order."""
    now = time.time()
    calls = []
    sets = 0
    for start in range(0, len(writes), SCRIPT_WRITES):
        chunk = writes[start : start + SCRIPT_WRITES] if len(writes) > SCRIPT_WRITES else writes
        packed = _packing.pack_writes(chunk, now)
        if packed is None:
            return None
        keys, values, value_lengths, deadlines, chunk_sets = packed
        calls.append((now, keys, values, value_lengths, deadlines))
        sets += chunk_sets
    return ScriptBatch(calls, sets)


def scripts_refused(error: Exception) -> bool:
    """Whether ``error``, the reply to a batch's ``EVALSHA`` or ``EVAL``, says that this
    connection may not run scripts at all: a user whose ACL denies ``@scripting`` ("no
    permissions to run the 'evalsha' command"), or a server without the commands ("unknown
    command 'EVALSHA'"). Not an error of a write inside the script (an ACL on one key, out
    of memory): those name no command."""
    text = str(error).lower()
    names_command = "'evalsha'" in text or "'eval'" in text
    return names_command and ("no permissions to run" in text or "unknown command" in text)


def sets_in(writes: list[PackedWrite]) -> int:
    """How many of ``writes`` are sets (the layer's ``puts``)."""
    return len(writes) - list(map(attrgetter("data"), writes)).count(None)


__all__ = [
    "SCRIPT_WRITES",
    "WRITE_BATCH",
    "ScriptBatch",
    "script_batch",
    "scripts_refused",
    "sets_in",
]
