"""Reading a dead-letter file back, and replaying it into any writer: the latest record of
each key only, in file order, under the file's claim (``files.py``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .files import Claim, _append_locked, claim, nothing_to_replay
from .records import DeadLetterRecord, Outcome, _type_name

BatchResult = Outcome | bool | Exception
"""What a batch writer answers for each record: an ``Outcome`` (or ``True`` / ``False``),
or the error its write failed with."""
BatchWriter = Callable[[list[DeadLetterRecord]], Sequence[BatchResult]]

MAX_REPORTED_ERRORS = 10


def read_dead_letters(
    path: str | os.PathLike[str], *, errors: Literal["raise", "skip"] = "raise"
) -> Iterator[DeadLetterRecord]:
    """The records of a dead-letter file, in the order they were written. A line that is
    not a record raises ``ValueError`` naming it (``errors="skip"``: skipped; a line torn
    by a crash mid-append is the usual one)."""
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                yield DeadLetterRecord.from_json(line)
            except ValueError as error:
                if errors == "raise":
                    raise ValueError(f"{path}, line {number}: {error}") from None


@dataclass(frozen=True)
class ReplayReport:
    """What a replay did, one count per record (or line). ``kept_in``: where the records
    not replayed now are (``None`` if none is left)."""

    replayed: int = 0
    """Records written (and dropped from the file)."""
    superseded: int = 0
    """Records of a key with a newer record in the file: never written (dropped)."""
    older: int = 0
    """Records not newer than what the layer holds now: skipped (dropped)."""
    expired: int = 0
    """Records whose lifetime was over: nothing to write (dropped)."""
    failed: int = 0
    """Records whose write raised (kept)."""
    kept: int = 0
    """Records the writer left alone (another layer's, say) (kept)."""
    unreadable: int = 0
    """Lines that are not records this version replays (kept as they were)."""
    resumed: int = 0
    """Claimed files of earlier replays that died, taken over and replayed too."""
    kept_in: Path | None = None
    errors: tuple[str, ...] = field(default=())
    """The first few failures, as ``"key: Type: message"`` (``"(and N more)"`` when more
    records failed alike), and unreadable lines, as ``"'line...': what is wrong"``."""


def replay(
    path: str | os.PathLike[str],
    write: Callable[[DeadLetterRecord], Outcome | bool],
    *,
    keep_to: str | os.PathLike[str] | None = None,
) -> ReplayReport:
    """Hand the latest record of each key of the dead-letter file ``path`` to ``write``
    (see ``Outcome``), in file order; append the records that failed or were kept, and
    unreadable lines, to ``keep_to`` (default: ``path``, which a live cache may have
    recreated meanwhile).

    Of the records of one key (same layer and stored key), only the latest is written:
    the one with the latest ``written_ms``, a record without one (version 1) counting as
    older than any with one, and the later in the file among equals. The others are
    ``superseded``: dropped, unless ``write`` keeps the latest (then all are kept).
    Whether the latest is newer than what the store holds now is ``write``'s to decide
    (``"older"``); ``replay_into_redis`` does.

    The file is claimed first (renamed to ``PATH.replaying-PID-NS``, its lock held until
    the end) and deleted at the end. A replay that dies midway leaves that claimed file:
    the next replay of ``path`` takes it over (not one whose replay still runs: it holds
    the lock) and replays it too, so records written before the interruption are written
    again (harmless when ``write`` skips what is not newer, as ``replay_into_redis``
    does). ``FileNotFoundError`` if there is nothing to replay; ``IsADirectoryError`` for
    a directory."""

    def write_each(records: list[DeadLetterRecord]) -> list[BatchResult]:
        results: list[BatchResult] = []
        for record in records:
            try:
                results.append(write(record))
            except Exception as error:
                results.append(error)
        return results

    return replay_batches(path, write_each, keep_to=keep_to)


def record_identity(record: DeadLetterRecord) -> Hashable:
    """What makes two records writes of the same key: the layer and the stored key (or the
    cache key, for a layer that gives none)."""
    return (record.layer, record.store_key, record.key, record.key_repr)


def replay_batches(
    path: str | os.PathLike[str],
    write: BatchWriter,
    *,
    keep_to: str | os.PathLike[str] | None = None,
    identity: Callable[[DeadLetterRecord], Hashable] = record_identity,
    batch_size: int = 500,
) -> ReplayReport:
    """``replay`` with a writer of batches (a Redis pipeline, a bulk upsert): ``write``
    gets up to ``batch_size`` records at a time and answers one result per record, an
    outcome or the error that record failed with (an error it raises ends the replay:
    the claimed files stay, for the next replay to take over). ``identity(record)``: the
    key two records must share to supersede one another."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    path = Path(path)
    target = Path(keep_to) if keep_to is not None else path
    claims = claim(path)
    if not claims:
        raise nothing_to_replay(path)
    try:
        run = _Run(_lines(claims), identity, resumed=sum(taken.resumed for taken in claims))
        for chunk in run.batches(batch_size):
            run.settle(chunk, write([record for (_, record), _ in chunk]))
        keep = run.kept_lines()
        if keep:
            _append_locked(target, b"".join(keep), fsync=True)
        for taken in claims:  # only once what is kept is safe in ``target``
            taken.finish()
    finally:
        for taken in claims:  # after a failure: the files stay, unlocked, to take over
            taken.release()
    return run.report(target if keep else None)


Numbered = tuple[int, DeadLetterRecord]
"""A record and the number of its line in the replay's input."""


class _Run:
    """One replay's input and tally: the lines read, the records grouped by key, what was
    done with each."""

    def __init__(
        self, lines: list[bytes], identity: Callable[[DeadLetterRecord], Hashable], resumed: int
    ) -> None:
        self.lines = lines
        self.counts = dict.fromkeys(
            ("replayed", "superseded", "older", "expired", "failed", "kept", "unreadable"), 0
        )
        self.resumed = resumed
        self.errors: dict[str, tuple[str, int]] = {}  # error -> (its first record, count)
        self.keep: set[int] = set()
        self.groups: dict[Hashable, list[Numbered]] = {}
        for number, line in enumerate(lines):
            try:
                record = DeadLetterRecord.from_json(line)
            except ValueError as error:
                self._count("unreadable", number, (_snippet(line), str(error)))
                continue
            try:
                group = identity(record)
            except Exception as error:
                self._count("failed", number, _failure(record, error))
                continue
            self.groups.setdefault(group, []).append((number, record))

    def batches(self, size: int) -> Iterator[list[tuple[Numbered, list[Numbered]]]]:
        """The latest record of each key with all the key's records, in file order, by
        ``size``."""
        latest = sorted(
            ((max(members, key=_recency), members) for members in self.groups.values()),
            key=lambda pair: pair[0][0],
        )
        for start in range(0, len(latest), size):
            yield latest[start : start + size]

    def settle(
        self, chunk: list[tuple[Numbered, list[Numbered]]], results: Sequence[BatchResult]
    ) -> None:
        if len(results) != len(chunk):
            raise ValueError(f"write answered {len(results)} results for {len(chunk)} records")
        for ((number, record), members), result in zip(chunk, results, strict=True):
            if isinstance(result, BaseException):
                self._count("failed", number, _failure(record, result))
            else:
                outcome = _outcome(result)
                if outcome == "kept":  # not for this writer: the key's records stay as they are
                    for member, _ in members:
                        self._count("kept", member)
                    continue
                self.counts[outcome] += 1
            self.counts["superseded"] += len(members) - 1

    def _count(self, what: str, number: int, error: tuple[str, str] | None = None) -> None:
        """Count a record (or line) as ``what``; ``error``: where and what went wrong."""
        self.counts[what] += 1
        if what in ("kept", "failed", "unreadable"):
            self.keep.add(number)
        if error is not None:
            where, message = error
            first, alike = self.errors.get(message, (where, 0))
            if alike or len(self.errors) < MAX_REPORTED_ERRORS:
                self.errors[message] = (first, alike + 1)

    def kept_lines(self) -> list[bytes]:
        return [self.lines[number] for number in sorted(self.keep)]

    def report(self, kept_in: Path | None) -> ReplayReport:
        return ReplayReport(
            **self.counts,
            resumed=self.resumed,
            kept_in=kept_in,
            errors=tuple(
                f"{where}: {message}" + (f" (and {alike - 1} more)" if alike > 1 else "")
                for message, (where, alike) in self.errors.items()
            ),
        )


def _lines(claims: list[Claim]) -> list[bytes]:
    """The non-blank lines of the claimed files, in order, each ending with a newline (the
    last line of a file torn mid-append has none)."""
    return [
        line if line.endswith(b"\n") else line + b"\n"
        for taken in claims
        for line in taken.read_lines()
        if line.strip()
    ]


def _recency(numbered: Numbered) -> tuple[int, int, int]:
    """Orders the records of one key: by ``written_ms``, a record without one before any
    with one, then by file order."""
    number, record = numbered
    if record.written_ms is None:
        return (0, 0, number)
    return (1, record.written_ms, number)


def _outcome(result: Any) -> str:
    if result is None or result is True or result == "replayed":
        return "replayed"
    if result is False or result == "kept":
        return "kept"
    if result in ("expired", "older"):
        return str(result)
    raise ValueError(f"write returned {result!r}: not a replay outcome")


def _failure(record: DeadLetterRecord, error: BaseException) -> tuple[str, str]:
    return record.key, f"{_type_name(error)}: {error}"


def _snippet(line: bytes, width: int = 60) -> str:
    text = line.decode("utf-8", "replace").strip()
    return repr(text if len(text) <= width else text[: width - 3] + "...")
