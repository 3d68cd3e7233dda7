"""The local journal of a write-behind layer (``WriteBehind(journal=DIRECTORY)``).

Without it, a write-behind write lives in memory until it is sent: a normal exit, SIGTERM or
``close()`` deliver it (or dead-letter it), but a process killed outright (SIGKILL, the OOM
killer, a crash) loses what was queued. With it, every write is appended to a file before
``set()`` returns, and the next cache built on the same directory (a restart, or another
worker of the same service) sends what a dead process left.

Layout: ``DIRECTORY/<layer name>/<pid>-<start>.lock`` is held (``flock``) by a live
process for as long as it runs; its writes go to ``<pid>-<start>-<n>.journal`` segments.
A segment is deleted once every write appended to it has left the queue (delivered or
dead-lettered: a watching flush mark, ``WriteQueue.mark(flush=False)``, taken when the
segment is closed). A new segment starts every ``SEGMENT_SECONDS`` or ``SEGMENT_BYTES``, so a
busy queue keeps only its last seconds of writes on disk.

Recovery, when a write-behind worker starts: every lock file that nobody holds belongs to a
dead process; its segments are read in order, the latest write of each key is kept (the
queue coalesces the same way), those writes are queued and appended to this process's own
journal, then the dead process's files are deleted. A record cut short by a power cut (its
length or CRC does not check) ends the segment.

A record: 4 bytes length, 4 bytes CRC-32 (big-endian), then a pickle of ``(key, op,
payload type, payload fields)``. The journal is the service's own private file, like a
database's write-ahead log: the folder is created 0700 and files 0600, and only a later run
of the same service reads it back. A key that cannot be pickled (a ``@cached`` call's key)
is journaled as its text, the form a shared layer stores it under.

Cost: a pickle and one ``write`` per ``set()`` (the page cache survives the process: SIGKILL
loses nothing); ``journal_fsync=True`` adds an ``fsync`` per ``set()`` to survive a power cut.
Needs POSIX file locks (``fcntl``): not on Windows.
"""

from __future__ import annotations

import logging
import os
import pickle
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .core.errors import SerializationError
from .layers.writer import PersistWrite

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]  # a module or None: checked before use

log = logging.getLogger("multilayercache.journal")

SEGMENT_SECONDS = 1.0
"""A new segment starts after this long, so that delivered writes leave the disk soon."""
SEGMENT_BYTES = 16 * 1024 * 1024
"""... or after this many bytes."""

_HEADER = struct.Struct(">II")  # length, CRC-32 of the pickle
_PAYLOADS: dict[str, type[tuple[Any, ...]]] = {"PersistWrite": PersistWrite}
"""The layers' queued writes, journaled as their fields. A layer whose module is optional
(the Redis layers' ``PackedWrite``: redis is an extra) adds its own with ``journaled``."""
Record = tuple[Any, str, Any]  # key, op, payload


def journaled(kind: type) -> type:
    """Journal the named tuple ``kind`` as its fields (see ``Journal.encode``); a class
    decorator."""
    _PAYLOADS[kind.__name__] = kind
    return kind


class Journal:
    """One process's journal of one write-behind layer (see the module docstring). Not
    thread-safe: the worker calls ``append`` and ``collect`` under its queue's lock."""

    def __init__(self, directory: str | os.PathLike[str], layer: str, fsync: bool = False):
        if fcntl is None:
            raise NotImplementedError("a write-behind journal needs POSIX file locks (fcntl)")
        self.folder = Path(directory).absolute() / _file_name(layer)
        self.fsync = fsync
        self.appended = 0
        self._lock_fd = -1  # held for the life of the process: we are alive
        self._name = ""
        self._fd = -1  # the open segment
        self._index = 0
        self._bytes = 0
        self._opened_at = 0.0
        self._finished: list[tuple[Path, int]] = []  # closed segments and their end marks
        self._segment: Path | None = None

    # ---------------------------------------------------------------- writing
    @staticmethod
    def encode(key: Any, op: str, payload: Any) -> bytes:
        """The record of a write (before its key is queued: a value that cannot be
        journaled raises ``SerializationError`` and is not acknowledged)."""
        # The layers' payloads as plain tuples and a name: pickling a named tuple as itself
        # costs twice as much, on every set().
        kind = type(payload).__name__
        if _PAYLOADS.get(kind) is type(payload):
            fields = tuple(payload)
        else:
            kind, fields = "", payload
        try:
            data = pickle.dumps((key, op, kind, fields), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            try:  # a key with no pickled form (a @cached call's): its text
                data = pickle.dumps((str(key), op, kind, fields), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as error:
                raise SerializationError(
                    f"the write of {key!r} cannot be journaled: {error}"
                ) from None
        return _HEADER.pack(len(data), zlib.crc32(data)) + data

    def append(self, record: bytes, now: float, mark: Callable[[], int]) -> None:
        """Append one record; ``mark()`` takes the queue's watching mark when a segment
        is closed (every write in it was queued before that mark)."""
        if self._fd < 0:
            self._open(now)
        elif self._bytes >= SEGMENT_BYTES or now - self._opened_at >= SEGMENT_SECONDS:
            self._finish_segment(mark())
            self._open(now)
        view = memoryview(record)
        while view:  # a regular file takes it all at once, but for a signal or a full disk
            view = view[os.write(self._fd, view) :]
        if self.fsync:
            os.fsync(self._fd)
        self._bytes += len(record)
        self.appended += 1

    def collect(self, reached: Callable[[int], bool]) -> None:
        """Delete the closed segments whose writes have all left the queue."""
        while self._finished and reached(self._finished[0][1]):
            path, _ = self._finished.pop(0)
            _unlink(path)

    def close(self, idle: bool) -> None:
        """The worker closed: with the queue ``idle`` everything is delivered or
        dead-lettered, and the journal goes; else its files stay for the next start."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if idle:
            for path, _ in self._finished:
                _unlink(path)
            self._finished.clear()
            if self._segment is not None:
                _unlink(self._segment)
                self._segment = None
            if self._lock_fd >= 0:
                _unlink(self.folder / f"{self._name}.lock")
                os.close(self._lock_fd)
                self._lock_fd = -1

    def after_fork(self) -> None:
        """In a forked child: the parent's files are the parent's. Drop our copies of its
        descriptors (the lock stays the parent's), and start a journal of our own at the
        child's first write."""
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._lock_fd = -1
        self._finished.clear()
        self._segment = None

    def _open(self, now: float) -> None:
        if self._lock_fd < 0:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._name = f"{os.getpid()}-{time.time_ns()}"
            self._lock_fd = _open_file(self.folder / f"{self._name}.lock")
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._index = 0
        self._index += 1
        self._segment = self.folder / f"{self._name}-{self._index:06d}.journal"
        self._fd = _open_file(self._segment)
        self._bytes = 0
        self._opened_at = now

    def _finish_segment(self, end_mark: int) -> None:
        assert self._segment is not None
        os.close(self._fd)
        self._fd = -1
        self._finished.append((self._segment, end_mark))

    # ---------------------------------------------------------------- recovery
    def recover(self) -> tuple[list[Record], Callable[[], None]]:
        """The writes left by dead processes (the latest per key, in order), and what to
        call once they are queued and journaled again: it deletes their files. Until then
        their lock files stay held by us, so no other process recovers them too."""
        if not self.folder.is_dir():
            return [], lambda: None
        latest: dict[Any, Record] = {}
        claimed: list[tuple[int, Path]] = []
        for lock_path in sorted(self.folder.glob("*.lock"), key=_started):
            fd = _claim(lock_path)
            if fd < 0:
                continue  # alive: its owner delivers its own writes
            claimed.append((fd, lock_path))
            for segment in sorted(self.folder.glob(f"{lock_path.stem}-*.journal")):
                for key, op, payload in _records(segment):
                    latest.pop(key, None)  # re-inserted: in the order of the latest write
                    latest[key] = (key, op, payload)

        def forget_them() -> None:
            for fd, lock_path in claimed:
                for segment in self.folder.glob(f"{lock_path.stem}-*.journal"):
                    _unlink(segment)
                _unlink(lock_path)
                os.close(fd)

        if latest:
            log.warning(
                "multilayercache: %s: %d write(s) recovered from the journal of a process "
                "that ended without delivering them",
                self.folder,
                len(latest),
            )
        return list(latest.values()), forget_them


def _records(segment: Path) -> Iterator[Record]:
    data = segment.read_bytes()
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        body = data[offset + _HEADER.size : offset + _HEADER.size + length]
        if len(body) < length or zlib.crc32(body) != crc:
            log.error("multilayercache: %s: a torn record at byte %d ends it", segment, offset)
            return
        try:
            key, op, kind, fields = pickle.loads(body)
            payload = _PAYLOADS[kind](*fields) if kind else fields
        except Exception as error:  # written by another version that no longer reads back
            log.error(
                "multilayercache: %s: unreadable record at byte %d: %r", segment, offset, error
            )
        else:
            yield key, op, payload
        offset += _HEADER.size + length


def _claim(lock_path: Path) -> int:
    """A descriptor holding ``lock_path``'s lock if its owner is gone, else -1."""
    try:
        fd = os.open(lock_path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return -1
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return -1
    return fd


def _started(lock_path: Path) -> tuple[int, str]:
    _, _, start = lock_path.stem.partition("-")
    return (int(start) if start.isdigit() else 0, lock_path.name)


def _open_file(path: Path) -> int:
    return os.open(
        path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600
    )


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _file_name(layer: str) -> str:
    return "".join(char if char.isalnum() or char in "-_." else "_" for char in layer) or "layer"


__all__ = ["Journal", "SEGMENT_BYTES", "SEGMENT_SECONDS", "journaled"]
