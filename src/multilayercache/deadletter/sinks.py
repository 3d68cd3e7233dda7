"""Where dead writes go: a JSONL file and/or a callback (``DeadLetter``), or the log alone
(``LogDeadLetters``), as ``WriteBehind(dead_letter=...)`` names it (``sink_for``)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .._forking import register_after_fork
from ..core.writepolicy import DEFAULT_DEAD_LETTER_PATH, DeadLetterSink
from .files import _append_locked
from .records import DeadLetterRecord

log = logging.getLogger("multilayercache.deadletter")


class DeadLetter:
    """A dead-letter sink: appends records to a JSONL file (``path``; relative paths are
    resolved now, so a later ``chdir`` does not move it; ``None``: no file) and/or calls
    ``callback(record)`` for each. ``fsync`` (default on; dead letters are rare): a record
    is on disk when ``append`` returns.

    ``append`` tries every sink even when one fails, then raises the first error: the
    caller (the write-behind worker) logs it and goes on; the writes are then lost, and
    said so loudly. Thread-safe and fork-safe (a child forked mid-append gets a lock of
    its own); blocking (file IO): call it from a worker thread, or through
    ``asyncio.to_thread`` from a task."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = DEFAULT_DEAD_LETTER_PATH,
        callback: Callable[[DeadLetterRecord], Any] | None = None,
        *,
        fsync: bool = True,
    ) -> None:
        if path is None and callback is None:
            raise ValueError("a dead letter needs a path, a callback, or both")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self.path = None if path is None else Path(path).absolute()
        self.callback = callback
        self.fsync = fsync
        self.appended = 0
        """Records taken so far (by the file or the callback)."""
        self._lock = threading.Lock()
        register_after_fork(self)

    def _after_fork(self) -> None:
        # In a forked child: a thread of the parent may have held the lock mid-append (the
        # descriptor it held, with its flock, the child closes: see files.py).
        self._lock = threading.Lock()

    def append(self, records: Iterable[DeadLetterRecord]) -> None:
        """Keep ``records`` (see the class docstring)."""
        records = list(records)
        if not records:
            return
        failures: list[BaseException] = []
        taken = 0  # records that reached at least one sink
        if self.path is not None:
            data = "".join(record.to_json() + "\n" for record in records).encode()
            try:
                with self._lock:
                    _append_locked(self.path, data, self.fsync)
                taken = len(records)
            except OSError as error:
                failures.append(error)
                log.error("multilayercache: cannot write dead letters to %s: %s", self.path, error)
        if self.callback is not None:
            called = 0
            for record in records:
                try:
                    self.callback(record)
                    called += 1
                except Exception as error:
                    failures.append(error)
                    log.exception("multilayercache: the dead-letter callback failed")
            taken = max(taken, called)
        self.appended += taken
        first = records[0]
        log.warning(
            "multilayercache: %d write(s) of layer %r dead-lettered%s (key %s: %s: %s)",
            len(records),
            first.layer,
            f" to {self.path}" if self.path else "",
            first.key,
            first.error_type,
            first.error_message,
        )
        if failures:
            raise failures[0]

    def __repr__(self) -> str:
        return f"<DeadLetter {self.path or ''}{' + callback' if self.callback else ''}>"


class LogDeadLetters:
    """The sink of ``WriteBehind(dead_letter=None)``: nothing is kept, but every dead write
    is logged at ERROR (its key and error) and counted: never silent."""

    def __init__(self) -> None:
        self.appended = 0

    def append(self, records: Iterable[DeadLetterRecord]) -> None:
        for record in records:
            self.appended += 1
            log.error(
                "multilayercache: write lost (no dead-letter sink): layer %r %s %s: %s: %s",
                record.layer,
                record.op,
                record.key,
                record.error_type,
                record.error_message,
            )


def sink_for(option: str | os.PathLike[str] | DeadLetterSink | None) -> DeadLetterSink:
    """The sink a ``WriteBehind.dead_letter`` option names: a path becomes a ``DeadLetter``
    on it, a sink is used as is, ``None`` becomes ``LogDeadLetters``."""
    if option is None:
        return LogDeadLetters()
    if isinstance(option, (str, os.PathLike)):
        return DeadLetter(option)
    if isinstance(option, DeadLetterSink):
        return option
    raise TypeError(f"not a dead-letter path or sink: {option!r}")
