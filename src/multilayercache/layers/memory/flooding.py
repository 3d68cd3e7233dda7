"""Hash flooding: keys chosen to share one hash (both twins of ``InMemoryLayer``).

Whoever picks keys (a user id from a request) can pick many that share one Python hash:
ints ``k + i * (2**61 - 1)`` all hash to ``k``, and a key type whose ``__hash__`` returns a
constant does the same with strings. Everything in the layer that is keyed by the hash then
sees them as one key:

* The frequency sketch and the doorkeeper count the hash: thousands of one-off keys
  sharing it look like one key read thousands of times, and each wins admission.
* The ghost table remembers the hash: each such key looks like the last one coming back at
  once, a proven key due sooner than any victim. Together: 5,000 one-off keys evicted 350
  of 1,000 hot keys (keys with distinct hashes: none).
* Lookups of that hash compare the key with every held key sharing it (the compiled index
  probes one run of buckets, the pure twin's ``dict`` one chain): 3.4 us instead of 41 ns
  with 5,000 held, a set 18.8 us.

So the layer holds at most ``MAX_KEYS_PER_HASH`` keys sharing one hash. A new key whose
hash that many held keys already share is not stored: counted in ``stats().rejections``
(as a key admission turns away), logged (at 1, 10, 100, ... such keys per layer), and
its lookups are not counted as accesses either (they could only be credited to the keys
that hold the hash, which never see them). A lookup or a write of such a key compares it
with ``MAX_KEYS_PER_HASH`` keys at most. The keys held keep their hash's counts (a flood
keeps them warm), so at most that many entries can push hot keys out, whatever the size of
the flood.

Honest keys (ints, strings, tuples of them) share a full 64-bit hash almost never: two
distinct ints at most among ordinary ones (``-1`` and ``-2``), so the bound changes nothing
for them (the development traces replay identically). A key type whose ``__hash__`` spreads
poorly (hashing one field of several) now caches four keys per hash value instead of
every key at a quadratic cost; the warning says so.
"""

from __future__ import annotations

import logging
from typing import Any

# Keys sharing one hash a layer holds at most (the compiled twin's KEYS_PER_HASH, slots.pxd).
MAX_KEYS_PER_HASH = 4

log = logging.getLogger("multilayercache")


def warn_crowded(layer_name: str, key: Any, turned_away: int) -> None:
    """Log that ``key`` was not stored because its hash is crowded, at a bounded rate: the
    1st, 10th, 100th, ... key a layer turns away so."""
    rest = turned_away
    while rest >= 10 and rest % 10 == 0:
        rest //= 10
    if rest != 1:
        return
    log.warning(
        "%s: a new key of type %s not cached (%d so far): %d keys sharing its hash are held "
        "already, the most a layer keeps (a guard against hash flooding; if these keys are "
        "honest, their __hash__ spreads poorly)",
        layer_name,
        type(key).__name__,
        turned_away,
        MAX_KEYS_PER_HASH,
    )
