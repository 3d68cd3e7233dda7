"""Appending to and reading a dead-letter file under its locks (a thread lock and ``flock``),
safe from threads and from processes sharing the file."""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: in-process locking only
    fcntl = None  # type: ignore[assignment]


def _append_locked(path: Path, data: bytes, fsync: bool) -> None:
    """Append ``data`` to ``path`` under an exclusive ``flock``, in one ``write``. If the
    file was renamed away (a replay claimed it) between ``open`` and ``flock``, append to
    the new file at ``path`` instead: the replay may have read the old one already."""
    while True:
        fd = os.open(
            path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600
        )
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not _same_file(fd, path):
                    continue
            view = memoryview(data)
            while view:  # a regular file writes it all, but for a full disk or a signal
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
            return
        finally:
            os.close(fd)  # releases the flock


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _read_locked(path: Path) -> list[bytes]:
    """The lines of ``path``, read under its ``flock``: an append that began before the
    file was renamed finishes first, and later ones go to the new file."""
    with open(path, "rb") as file:
        if fcntl is not None:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
        return file.readlines()
