"""One layer as a manager holds it: a ``Tier`` (the layer, its policy, its depth, and what
the manager counts about it), and the checks that turn a list of layers into tiers."""

from __future__ import annotations

import dataclasses
import inspect
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from .breaker import CircuitBreaker, NodeBreakers
from .errors import LayerError, LayerRateLimited, LayerUnavailableError, is_transient
from .freshness import Lifetime
from .latency import LatencyRecorder
from .log import ThrottledWarning
from .options import LayerPolicy
from .ratelimit import RateLimiter
from .ttl import optional_ttl_seconds, ttl_seconds
from .writepolicy import WriteBehind
from .writequeue import WriteQueue

_NO_LOCK: AbstractContextManager[Any] = nullcontext()

LAYER_METHODS = ("get", "set", "delete", "get_many", "set_many", "stats")
"""What the manager calls on a layer (see ``multilayercache.layers.base.Layer``)."""

WRITE_BEHIND_METHODS = (
    "encode_write",
    "encode_delete",
    "write_packed",
    "pending_entry",
    "dead_letter_record",
)
"""What a write-behind layer also offers: encode a write now, send a batch of them later,
read a queued one back, and describe one given up on (both Redis layers and the writer
layers do)."""

SKIPPABLE_CALLS = frozenset(
    {"get", "get_many", "get_entry", "get_entries", "contains", "__contains__", "remaining_ttl"}
)
"""The reads that a rate-limited layer skips when it has no token (a miss there); every
other call is a write, which waits for one (see ``Tier.take_token``)."""


KEYED_CALLS = frozenset(
    {
        "get", "get_entry", "contains", "__contains__", "remaining_ttl",
        "set", "set_entry", "add", "add_entry", "touch", "touch_entry",
        "incr", "incr_entry", "decr", "extend_entry", "delete",
    }
)  # fmt: skip
"""The calls whose first argument is the one key they touch: on a cluster layer, they go
through the breaker of that key's node (see ``Tier.breaker_for``)."""


@dataclass(eq=False)
class Tier:
    """One layer of a manager, ``depth`` 0 being the fastest."""

    layer: Any
    policy: LayerPolicy
    name: str
    depth: int
    is_async: bool
    latency: LatencyRecorder = field(default_factory=LatencyRecorder)
    read_errors: int = 0
    write_errors: int = 0
    encode_errors: int = 0
    """Values this layer could not encode, that were therefore not cached in it."""
    warn: ThrottledWarning = field(default_factory=ThrottledWarning)

    def __post_init__(self) -> None:
        self.entries = self.has("get_entry") and self.has("set_entry")
        """The layer keeps freshness (``get_entry`` / ``set_entry``): stale values too."""
        self.reads_fresh = self.entries and self.has("get_fresh")
        """The layer answers a batch read with its fresh values at once, filling in their
        entries only when asked (``get_fresh``: both Redis layers)."""
        self.typed = bool(getattr(self.layer, "typed_values", False))
        """The layer encodes values: it takes ``value_type=`` (see ``RedisCodec``)."""
        self.in_process = bool(getattr(self.layer, "in_process", False)) and not self.is_async
        """The layer never waits on IO (``InMemoryLayer``): the fast paths may call it
        directly, outside any plan."""
        self.contains_method = "contains" if self.has("contains") else "__contains__"
        self.breaker: CircuitBreaker | None = None
        self.retry = None if self.in_process else self.policy.retry
        if not self.in_process and self.policy.breaker is not None:
            self.breaker = CircuitBreaker(self.policy.breaker)
        self.node_breakers: NodeBreakers | None = None
        """On a cluster layer (one that says which node serves a key: ``node_of``), a
        breaker per node for the calls of one key; ``breaker`` then guards the calls that
        span nodes (see ``core/breaker.py``)."""
        self._node_of: Callable[[Any], str | None] | None = None
        if self.breaker is not None and getattr(self.layer, "is_cluster", False):
            node_of = getattr(self.layer, "node_of", None)
            if callable(node_of):
                self.node_breakers = NodeBreakers(self.policy.breaker)
                self._node_of = node_of
        self.limiter: RateLimiter | None = None
        """The layer's rate limit (``LayerPolicy(rate_limit=...)``), or ``None``."""
        if self.policy.rate_limit is not None:
            if self.in_process:
                raise ValueError(
                    f"layer {self.depth} ({self.name}) is in-process: a rate_limit protects a "
                    "server, and this layer has none (its hits never wait)"
                )
            # LayerPolicy's __post_init__ made any number a RateLimit.
            self.limiter = RateLimiter(self.policy.rate_limit)  # type: ignore[arg-type]
        self._guard = _NO_LOCK
        policy = self.policy
        self.default_lifetime: Lifetime | None = _default_lifetime(policy)
        """The lifetime of a write without a TTL of its own, when the policy draws no
        random jitter for it (computed once: ``set()`` without ``ttl`` is the common
        case)."""
        self.longest_hold = _longest_hold(policy, self.layer)
        """The longest the layer may keep a value written through this manager (its TTL
        cap, or the layer's default TTL, plus the stale window); raised by writes with a
        longer TTL of their own (``note_lifetime``). How long a delete that did not reach
        the layer must be remembered (``core/unconfirmed.py``)."""
        write = self.policy.write
        self.queue: WriteQueue | None = None
        """The write-behind queue (``LayerPolicy(write=WriteBehind(...))``), or ``None``:
        writes go through at once. The driver's worker sends it; every call on it is made
        under the driver's lock for it (see ``core/writequeue.py``)."""
        if isinstance(write, WriteBehind):
            if self.depth == 0:
                raise ValueError(
                    f"layer 0 ({self.name}) cannot be write-behind: no faster layer holds "
                    "the value meanwhile"
                )
            lacks = [method for method in WRITE_BEHIND_METHODS if not self.has(method)]
            if lacks:
                raise TypeError(
                    f"layer {self.depth} ({type(self.layer).__name__}) cannot be write-behind: "
                    f"it lacks {', '.join(lacks)}"
                )
            self.queue = WriteQueue(write)

    def lifetime_for(self, ttl: Any, rng: random.Random) -> Lifetime:
        """The lifetime of a write into this layer (see ``LayerPolicy.lifetime_for``):
        ``default_lifetime`` when the write has no TTL of its own and the policy draws no
        jitter, so the common ``set()`` computes nothing."""
        if ttl is None and self.default_lifetime is not None:
            return self.default_lifetime
        lifetime = self.policy.lifetime_for(ttl, rng)
        if ttl is not None:  # a write's own TTL may hold the key longer than the policy's
            self.note_lifetime(lifetime)
        return lifetime

    def note_lifetime(self, lifetime: Lifetime) -> None:
        """A write into this layer with ``lifetime`` (see ``longest_hold``)."""
        if lifetime.ttl is not None and lifetime.ttl + lifetime.stale_ttl > self.longest_hold:
            self.longest_hold = lifetime.ttl + lifetime.stale_ttl

    @property
    def guarded(self) -> bool:
        """Whether calls to this layer go through its breaker, retry policy or rate limit."""
        return self.breaker is not None or self.retry is not None or self.limiter is not None

    def share_lock(self, lock: AbstractContextManager[Any]) -> None:
        """The lock that serializes the breaker's and the rate limit's state (the drivers
        pass a thread lock)."""
        self._guard = lock
        if self.limiter is not None:
            self.limiter.share_lock(lock)

    def take_token(self, method: str, optional: bool, limiter: RateLimiter | None = None) -> float:
        """Before a call of ``method`` into a rate-limited layer: ``0.0`` if it may go now
        (a token taken), else the seconds until a token may be there, for a write to wait
        (``LayerPolicy.rate_limit_wait`` in all, see the drivers' ``wait_for_token``). A
        read (``SKIPPABLE_CALLS``) or an ``optional`` write (a cache fill) is not worth
        waiting for: without a token it raises ``LayerRateLimited`` at once, counted as
        skipped, and the plan takes it as a miss (a fill not made). ``limiter``: the one
        the caller read (``update_policy`` may replace the tier's meanwhile)."""
        limiter = limiter or self.limiter
        if limiter is None:  # the limit was lifted meanwhile
            return 0.0
        wait = limiter.try_take()
        if not wait:
            return 0.0
        read = method in SKIPPABLE_CALLS
        if read or optional:
            limiter.count("reads_skipped" if read else "writes_skipped")
            raise LayerRateLimited(
                f"{self.name}: over its rate limit of {limiter.limit.rate:g} calls/s, "
                f"{method} skipped"
            )
        return wait

    def refused(self, method: str, limiter: RateLimiter | None = None) -> LayerRateLimited:
        """The error for a write that found no token within ``rate_limit_wait`` (counted
        by ``limiter``, by default the tier's)."""
        limiter = limiter or self.limiter
        assert limiter is not None
        limiter.count("refused")
        return LayerRateLimited(
            f"{self.name}: over its rate limit of {limiter.limit.rate:g} calls/s: no token "
            f"came within {self.policy.rate_limit_wait:g} s, {method} not sent"
        )

    def breaker_for(self, method: str, args: tuple[Any, ...]) -> CircuitBreaker | None:
        """The breaker a call of ``method(*args)`` goes through: on a cluster layer, a
        single-key call's is its key's node's (when the client's slot map names one);
        every other call's is the layer's."""
        node_breakers = self.node_breakers
        if node_breakers is None or method not in KEYED_CALLS or not args:
            return self.breaker
        assert self._node_of is not None
        node = self._node_of(args[0])
        if node is None:
            return self.breaker
        with self._guard:
            return node_breakers.of(node)

    def admit(self, breaker: CircuitBreaker | None = None) -> None:
        """Before a call: raise ``LayerUnavailableError`` at once while ``breaker`` (by
        default the layer's; see ``breaker_for``) is open (or its probe slots are taken).
        Transient, as the layer's own timeouts are: the backend is down for now, and a
        later call may get through (a write-behind batch waits and is retried; a read
        counts the layer as unreachable). The drivers admit outside their retry loop, so
        an open breaker is never retried at once."""
        breaker = breaker or self.breaker
        if breaker is None:
            return
        with self._guard:
            if breaker.allow():
                return
            probe_in = breaker.probe_in
        raise LayerUnavailableError(
            f"{self.name}: circuit breaker open (next probe in {probe_in:.2f} s)"
        )

    def settle(self, error: BaseException | None, breaker: CircuitBreaker | None = None) -> None:
        """After an admitted call: a transient failure counts against ``breaker`` (by
        default the layer's), an answer (or an error the backend answered with) for it,
        anything else (bad input) not."""
        breaker = breaker or self.breaker
        if breaker is None:
            return
        with self._guard:
            if error is None or (isinstance(error, LayerError) and not error.transient):
                breaker.record_success()
            elif is_transient(error):
                breaker.record_failure()
            else:
                breaker.release()

    def update(self, changes: Mapping[str, Any]) -> LayerPolicy:
        """Replace fields of the policy (``update_policy``), from the next call on; the
        new policy. All under the tier's lock, so that updates made at once by several
        threads each apply whole, one after the other. Everything derived from the policy
        is built first: a change this tier cannot take (a bad value, ``write``, a rate
        limit on an in-process layer) raises and changes nothing. Then each is swapped
        in by one assignment of an object no running call mutates (a call in flight goes
        on with what it read: its breaker, its retry state, its lifetime). The breaker and
        the rate limit go on from the old ones (``CircuitBreaker.with_policy``,
        ``RateLimiter.with_limit``); unchanged ones are kept as they are."""
        with self._guard:
            old = self.policy
            policy = dataclasses.replace(old, **changes)
            if policy.write != old.write:
                raise ValueError(
                    f"layer {self.depth} ({self.name}): write cannot change on a running "
                    f"cache (its write-behind queue and worker are built with it): {old.write!r}"
                )
            if policy.rate_limit is not None and self.in_process:
                raise ValueError(
                    f"layer {self.depth} ({self.name}) is in-process: a rate_limit protects a "
                    "server, and this layer has none (its hits never wait)"
                )
            default_lifetime = _default_lifetime(policy)
            limiter = self.limiter
            if policy.rate_limit != old.rate_limit:
                rate: Any = policy.rate_limit
                if rate is None:
                    limiter = None
                elif limiter is None:
                    limiter = RateLimiter(rate, self._guard)
                else:
                    limiter = limiter.with_limit(rate)
            breaker, node_breakers = self.breaker, self.node_breakers
            if self.in_process or policy.breaker is None:
                breaker = node_breakers = None
            elif breaker is None or policy.breaker != old.breaker:
                breaker = (
                    CircuitBreaker(policy.breaker)
                    if breaker is None
                    else breaker.with_policy(policy.breaker)
                )
                node_of = getattr(self.layer, "node_of", None)
                if getattr(self.layer, "is_cluster", False) and callable(node_of):
                    node_breakers = (
                        NodeBreakers(policy.breaker)
                        if node_breakers is None
                        else node_breakers.with_policy(policy.breaker)
                    )
                    self._node_of = node_of
            self.policy = policy
            self.default_lifetime = default_lifetime
            self.longest_hold = max(self.longest_hold, _longest_hold(policy, self.layer))
            self.retry = None if self.in_process else policy.retry
            self.limiter = limiter
            self.node_breakers = node_breakers
            self.breaker = breaker
            return policy

    def has(self, method: str) -> bool:
        """Whether the layer offers ``method`` (the optional ones: ``delete_many``,
        ``clear``, ``remaining_ttl``, ``contains``)."""
        return callable(getattr(self.layer, method, None))


def _default_lifetime(policy: LayerPolicy) -> Lifetime | None:
    """``Tier.default_lifetime`` under ``policy`` (``None``: each write draws jitter)."""
    if policy.ttl_jitter or (policy.refresh_ahead is not None and policy.refresh_jitter):
        return None
    return policy.lifetime_for(None, random.Random())


def _longest_hold(policy: LayerPolicy, layer: Any) -> float:
    """How long ``layer`` may keep a write without a longer TTL of its own: the policy's
    TTL cap (requested TTLs never exceed it), else the layer's default TTL (``math.inf``
    when it has none), plus the stale window."""
    ttl = optional_ttl_seconds(policy.ttl, "LayerPolicy ttl")
    if ttl is None:
        default = getattr(layer, "default_ttl", None)
        ttl = default if isinstance(default, (int, float)) else math.inf
    return float(ttl) + ttl_seconds(policy.stale_ttl)


def make_tiers(
    layers: Sequence[Any], policies: Sequence[LayerPolicy | None] | None, allow_async: bool
) -> list[Tier]:
    """Check the layers (fastest first) and pair each with its policy."""
    layers = list(layers)
    if not layers:
        raise ValueError("a cache needs at least one layer")
    if policies is None:
        policies = [None] * len(layers)
    policies = list(policies)
    if len(policies) != len(layers):
        raise ValueError(f"got {len(policies)} policies for {len(layers)} layers")
    tiers = []
    names: set[str] = set()
    for depth, (layer, policy) in enumerate(zip(layers, policies, strict=True)):
        missing = [method for method in LAYER_METHODS if not callable(getattr(layer, method, None))]
        if missing:
            raise TypeError(f"layer {depth} ({type(layer).__name__}) lacks {', '.join(missing)}")
        if policy is not None and not isinstance(policy, LayerPolicy):
            raise TypeError(f"policy {depth} must be a LayerPolicy or None")
        is_async = inspect.iscoroutinefunction(layer.get)
        if is_async and not allow_async:
            raise TypeError(
                f"layer {depth} ({type(layer).__name__}) is asyncio-only: "
                "use AsyncMultilayerCache for it"
            )
        name = str(getattr(layer, "name", f"layer{depth}"))
        if name in names:
            name = f"{name}#{depth}"
        names.add(name)
        tiers.append(Tier(layer, policy or LayerPolicy(), name, depth, is_async))
    return tiers


def timed(tier: Tier, method: str) -> Callable[..., Any]:
    """The in-process tier's ``method`` (``get``, ``lookup``), recording how long each call
    takes (``record_latency=True``)."""
    call, record = getattr(tier.layer, method), tier.latency.record

    def timed_call(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args)
        finally:
            record(time.perf_counter() - start)

    return timed_call
