"""Tags and key prefixes, invalidated in O(1): what was written before an invalidation of
one of its tags, or of a prefix of its key, is no longer served (``Invalidations``).

The idea (FusionCache's and HybridCache's tags): invalidating a tag does not find the
entries that carry it. It records *when* the tag was invalidated, one write whatever the
number of entries; an entry written before that moment is treated as missing when it is
read. Key prefixes (``invalidate_prefix("user:42:")``) work the same way, the prefix
standing for every key that starts with it. Entries of the shared layer carry their tags
in their envelope and say when they were written; its old entries are reclaimed by their
TTL, never by a scan.

The marks live in the shared layer (one hash per key prefix, read once per process and
after every backplane gap), and every instance learns new ones from the backplane at once.
An in-process layer does not store when its entries were written: its tagged keys are
remembered here (``index``) and dropped when their tag is invalidated; a prefix drops the
keys of the in-process layers that start with it.

Marks are epoch milliseconds of the invalidating instance's clock: an entry written by an
instance whose clock runs behind may be taken as older than it is (a miss, the safe
direction); one whose clock runs ahead by more than the time between its write and the
invalidation escapes it. Marks are kept ``MARK_SECONDS`` (entries living longer than that
should not rely on invalidation by tag).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

Tags: TypeAlias = "str | Iterable[str]"
"""A tag, or several."""

MARK_SECONDS = 7 * 24 * 3600.0
"""How long a shared layer remembers an invalidation (its hash's expiry, renewed by each)."""
TAG_FIELD = "t:"
PREFIX_FIELD = "p:"


def check_tags(tags: Any, what: str = "tag") -> tuple[str, ...]:
    """``tags`` as a tuple of non-empty ``str`` (a single str is one tag, not its letters);
    ``TypeError``/``ValueError`` naming what is wrong (``what``: "tag" or "prefix")."""
    if isinstance(tags, str):
        tags = (tags,)
    try:
        checked = tuple(tags)
    except TypeError:
        raise TypeError(f"{what}s must be a str or an iterable of str, got {tags!r}") from None
    for tag in checked:
        if not isinstance(tag, str) or not tag:
            raise TypeError(f"each {what} must be a non-empty str, got {tag!r}")
        if len(tag.encode()) > 255:
            raise ValueError(f"a {what} is at most 255 bytes, got {tag[:40]!r}...")
    return checked


def tags_for(
    tags: Tags | Callable[..., Tags],
) -> Callable[[tuple[Any, ...], dict[str, Any]], tuple[str, ...]]:
    """What ``@cached(tags=...)`` gives each call: the same tags, or those a function of
    the call's arguments returns."""
    if callable(tags):
        function = tags
        return lambda args, kwargs: check_tags(function(*args, **kwargs))
    fixed = check_tags(tags)
    return lambda args, kwargs: fixed


class Invalidations:
    """The marks this instance knows (tag or prefix -> epoch ms of its last invalidation)
    and the keys its in-process layers hold per tag. Not thread-safe by itself: callers
    hold the manager's lock, or run on its one event loop."""

    def __init__(self, index_limit: int = 1_000_000) -> None:
        self.index_limit = index_limit
        """Keys the index may remember in all before it forgets those no longer held."""
        self._indexed = 0
        self.tags: dict[str, int] = {}
        self.prefixes: dict[str, int] = {}
        self.loaded = False
        """Whether the shared layer's marks were read (once, and again after a gap)."""
        self.index: dict[str, set[Any]] = {}
        """Tag -> the keys written with it into an in-process layer (may include keys
        evicted since: dropping those again costs nothing)."""

    def __bool__(self) -> bool:
        """Whether any mark is known: reads check entries only then."""
        return bool(self.tags or self.prefixes)

    # ---------------------------------------------------------------- marks
    def mark(self, tags: Iterable[str], prefixes: Iterable[str], at_ms: int) -> None:
        """Record invalidations at ``at_ms`` (a later mark of a name replaces an earlier)."""
        for tag in tags:
            if at_ms > self.tags.get(tag, -1):
                self.tags[tag] = at_ms
        for prefix in prefixes:
            if at_ms > self.prefixes.get(prefix, -1):
                self.prefixes[prefix] = at_ms

    def load(self, fields: Mapping[Any, Any]) -> None:
        """The marks as the shared layer holds them (``field -> ms``), merged in."""
        tags, prefixes = [], []
        for field, value in fields.items():
            try:
                name = field.decode() if isinstance(field, bytes) else str(field)
                at_ms = int(value)
            except (TypeError, ValueError):  # not a mark (nor UTF-8): never trusted
                continue
            if name.startswith(TAG_FIELD):
                tags.append((name[len(TAG_FIELD) :], at_ms))
            elif name.startswith(PREFIX_FIELD):
                prefixes.append((name[len(PREFIX_FIELD) :], at_ms))
        for tag, at_ms in tags:
            self.mark((tag,), (), at_ms)
        for prefix, at_ms in prefixes:
            self.mark((), (prefix,), at_ms)
        self.loaded = True

    def outdated(self, key: Any, written_ms: int | None, tags: tuple[str, ...]) -> bool:
        """Whether an entry of ``key`` written at ``written_ms`` with ``tags`` predates an
        invalidation of one of its tags or of a prefix of its key (an entry that does not
        say when it was written is taken as older)."""
        if written_ms is None:
            return False  # an in-process entry: dropped when the mark was made
        marks = self.tags
        for tag in tags:
            mark = marks.get(tag)
            if mark is not None and written_ms <= mark:
                return True
        if self.prefixes and isinstance(key, str):
            for prefix, mark in self.prefixes.items():
                if written_ms <= mark and key.startswith(prefix):
                    return True
        return False

    # ---------------------------------------------------------------- in-process keys
    def remember(self, keys: Iterable[Any], tags: tuple[str, ...]) -> bool:
        """``keys`` were written into an in-process layer with ``tags``. True when the
        index outgrew ``index_limit``: the caller then keeps only the keys still held
        (``keep_held``), since an in-process layer evicts without telling."""
        for tag in tags:
            held = self.index.get(tag)
            if held is None:
                held = self.index[tag] = set()
            before = len(held)
            held.update(keys)
            self._indexed += len(held) - before
        return self._indexed > self.index_limit

    def keep_held(self, held: Any) -> None:
        """Forget the indexed keys ``held`` (a container of the keys in-process layers
        hold now) does not contain."""
        for tag in list(self.index):
            kept = {key for key in self.index[tag] if key in held}
            if kept:
                self.index[tag] = kept
            else:
                del self.index[tag]
        self._indexed = sum(len(keys) for keys in self.index.values())

    def held_with(self, tags: Iterable[str]) -> list[set[Any]]:
        """The in-process keys written with any of ``tags``, one set per tag (forgotten
        here: the caller drops them)."""
        held: list[set[Any]] = []
        for tag in tags:
            keys = self.index.pop(tag, None)
            if keys:
                self._indexed -= len(keys)
                held.append(keys)
        return held

    @staticmethod
    def fields(tags: Iterable[str], prefixes: Iterable[str]) -> list[str]:
        """The shared layer's hash fields of these marks."""
        return [TAG_FIELD + tag for tag in tags] + [PREFIX_FIELD + prefix for prefix in prefixes]


__all__ = ["MARK_SECONDS", "Invalidations", "Tags", "check_tags", "tags_for"]
