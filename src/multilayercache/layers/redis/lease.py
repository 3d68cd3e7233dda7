"""Fleet leases in Redis (IO-free: the scripts and their calls; ``sync.py`` and ``aio.py``
send them). A lease says which instance of a fleet loads a key (``core/fleetflight.py``).

* ``TAKE``: ``SET lease token NX PX lease_ms``; if another holds it, the milliseconds its
  lease has left (``PTTL``), in the same round trip, so a waiter knows how long to wait at
  most before it may try again.
* ``RELEASE``: delete the lease only if it still holds our token (compare and delete): a
  lease that expired and was taken by another instance is not ours to end.

A lease lives beside the values, under the layer's prefix: ``PREFIX__mlc:lease:KEY``.
"""

from __future__ import annotations

from .scripts import Script, ScriptCall

LEASE_INFIX = "__mlc:lease:"
"""Between the layer's prefix and the key, in a lease's Redis key."""

# KEYS[1]: the lease; ARGV: token, lease (ms). 0: taken; else the ms the holder has left
# (at least 1; a lease without expiry, which only a foreign write makes, counts as a new one:
# it is given one, or it would hold the key until someone deletes it).
TAKE = Script.of(
    """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
local left = redis.call('PTTL', KEYS[1])
if left == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(ARGV[2])
end
if left < 1 then return 1 end
return left
"""
)

# KEYS[1]: the lease; ARGV: token. 1: released; 0: not ours (expired, taken by another).
RELEASE = Script.of(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
)


def take_call(lease_key: str, token: str, lease_ms: int) -> ScriptCall:
    """The script that takes the lease ``lease_key`` for ``lease_ms`` if it is free."""
    return ScriptCall("take_lease", TAKE, lease_key, (token, max(1, int(lease_ms))))


def release_call(lease_key: str, token: str) -> ScriptCall:
    """The script that ends the lease ``lease_key`` if ``token`` still holds it."""
    return ScriptCall("release_lease", RELEASE, lease_key, (token,))


__all__ = ["LEASE_INFIX", "RELEASE", "TAKE", "release_call", "take_call"]
