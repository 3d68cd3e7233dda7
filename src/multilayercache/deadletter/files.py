"""A dead-letter file under its lock (``flock``): appending to it, safe from threads and
from processes sharing the file, and claiming it for a replay.

One lock per file does both jobs. An append holds it for one ``write`` (and ``fsync``). A
replay takes it on the file, renames the file to a claimed name (``FILE.replaying-PID-NS``)
while holding it, and holds it until the replay is over: appends that had the file open
then see it renamed and go to a new file at ``FILE``, and a later replay knows a claimed
file is still being replayed while its lock is held. A replay that dies (SIGKILL, power
loss) leaves its claimed file behind, unlocked: the next replay of ``FILE`` takes it over.
Without ``fcntl`` (Windows) locks are only in-process: run one replay at a time there.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .._forking import register_after_fork

try:
    import fcntl
except ImportError:  # Windows: in-process locking only
    fcntl = None  # type: ignore[assignment]  # a module or None: checked before use

CLAIM_MARK = ".replaying-"
"""What a claimed file's name adds to the file's: ``FILE.replaying-PID-NS``."""
LOCK_POLL_SECONDS = 0.001
"""How often a busy lock is tried again. Locks are held for one append (an ``fsync``), or
by a replay: a waiter that polls can see the file renamed away meanwhile and move on to
the new one, where a blocking ``flock`` would wait for the whole replay."""


class _Descriptors:
    """The descriptors this module has open, closed in a forked child.

    A ``flock`` belongs to the open file, not to the process: a child forked while a
    thread appends (or replays) would hold the file open, and with it the lock, after the
    parent is done with it: every later append would wait for the child to exit. So the
    child closes what it inherited (the parent's lock is untouched). A fork waits for a
    descriptor being opened to be recorded, so none escapes."""

    def __init__(self) -> None:
        self.open: set[int] = set()
        self.lock = threading.Lock()
        register_after_fork(self)

    def opened(self, path: Path, flags: int) -> int:
        with self.lock:
            fd = os.open(path, flags, 0o600)
            self.open.add(fd)
            return fd

    def close(self, fd: int) -> None:
        with self.lock:
            self.open.discard(fd)
            os.close(fd)

    def _after_fork(self) -> None:
        self.lock = threading.Lock()  # held across the fork (see below)
        for fd in self.open:
            try:
                os.close(fd)
            except OSError:
                pass
        self.open.clear()


_descriptors = _Descriptors()
if hasattr(os, "register_at_fork"):
    # Fork only between two opens, never in the middle of one (the child then knows every
    # descriptor it must close).
    os.register_at_fork(
        before=lambda: _descriptors.lock.acquire(),
        after_in_parent=lambda: _descriptors.lock.release(),
    )


def _append_locked(path: Path, data: bytes, fsync: bool) -> None:
    """Append ``data`` to ``path`` under its lock, in one ``write``. If the file is renamed
    away (a replay claimed it) before the lock is ours, append to the new file at ``path``
    instead: the replay may have read the old one already."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    fd = _open_locked(path, flags)
    assert fd is not None  # O_CREAT: there is always a file
    try:
        view = memoryview(data)
        while view:  # a regular file writes it all, but for a full disk or a signal
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        _descriptors.close(fd)  # releases the lock


def _open_locked(path: Path, flags: int) -> int | None:
    """A descriptor of the file named ``path`` now, with its lock held (``None`` if there
    is no such file and ``flags`` do not create one). A file renamed or deleted while this
    waits for its lock is left for the one at ``path`` then."""
    while True:
        try:
            fd = _descriptors.opened(path, flags)
        except FileNotFoundError:
            if flags & os.O_CREAT:  # no such folder
                raise
            return None
        if fcntl is None:
            return fd
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if _same_file(fd, path):
                    time.sleep(LOCK_POLL_SECONDS)
                    continue
                break  # renamed away while locked: try the file at ``path`` now
            if _same_file(fd, path):
                return fd
            break  # renamed away between ``open`` and the lock
        _descriptors.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


@dataclass
class Claim:
    """A file a replay owns: renamed to ``path`` (a claimed name), its lock held by ``fd``
    until ``release``. ``resumed``: left by a replay that died, taken over."""

    path: Path
    fd: int
    resumed: bool = False

    def read_lines(self) -> list[bytes]:
        os.lseek(self.fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self.fd, 1 << 20):
            chunks.append(chunk)
        return io.BytesIO(b"".join(chunks)).readlines()  # lines end at b"\n" only

    def finish(self) -> None:
        """The replay is done with it: delete it, then let go of its lock."""
        os.unlink(self.path)
        self.release()

    def release(self) -> None:
        """Let go of the lock and keep the file (a replay that failed: the next one takes
        it over)."""
        if self.fd >= 0:
            _descriptors.close(self.fd)
            self.fd = -1


def check_replayable(path: Path) -> None:
    """``IsADirectoryError`` if ``path`` is a directory (or anything but a file), and
    ``FileNotFoundError`` if there is neither a file at ``path`` nor a claimed file left
    by a replay of it: say so before a replay connects to anything."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if not _claimed_names(path):
            raise nothing_to_replay(path) from None
        return
    if not stat.S_ISREG(mode):
        raise IsADirectoryError(
            errno.EISDIR,
            "not a dead-letter file (a directory, or not a regular file): give the path of "
            "the file itself",
            str(path),
        )


def nothing_to_replay(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        errno.ENOENT, "no dead-letter file there (nor a replay of one to resume)", str(path)
    )


def claim(path: Path) -> list[Claim]:
    """Claim what there is to replay at ``path``: the files left by replays of it that
    died (``FILE.replaying-*`` whose lock is free), oldest claim first, then the file
    itself, renamed to ``FILE.replaying-PID-NS`` under its lock. Every claim holds its
    lock until it is finished or released. Empty if there is nothing."""
    check_replayable(path)
    claims = []
    try:
        for name in _claimed_names(path):
            left = _take_over(path.with_name(name))
            if left is not None:
                claims.append(left)
        fresh = _claim_file(path)
        if fresh is not None:
            claims.append(fresh)
    except BaseException:
        for taken in claims:
            taken.release()
        raise
    return claims


def _claimed_names(path: Path) -> list[str]:
    """The names of claimed files of ``path`` in its folder, oldest claim first."""
    mark = path.name + CLAIM_MARK
    try:
        names = [name for name in os.listdir(path.parent) if name.startswith(mark)]
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda name: (_claimed_at(name[len(mark) :]), name))


def _claimed_at(suffix: str) -> int:
    """The time (ns) in a claimed name's ``PID-NS`` (0 if it has none: sorted first)."""
    try:
        return int(suffix.rsplit("-", 1)[-1])
    except ValueError:
        return 0


def _take_over(claimed: Path) -> Claim | None:
    """The claimed file of a replay that died, or ``None`` if it is not one: its replay
    still runs (it holds the lock), it finished meanwhile, or it is no regular file."""
    try:
        fd = _descriptors.opened(claimed, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, PermissionError):
        return None
    taken = Claim(claimed, fd, resumed=True)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            taken.release()
            return None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a replay that is running
                taken.release()
                return None
        if not _same_file(fd, claimed):  # its replay finished and deleted it
            taken.release()
            return None
    except BaseException:
        taken.release()
        raise
    return taken


def _claim_file(path: Path) -> Claim | None:
    """Rename the file at ``path`` to a claimed name while holding its lock (``None`` if
    there is no file): no other replay can take it between the rename and the lock, and
    appends that began before now end before the file is read."""
    fd = _open_locked(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    if fd is None:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a dead-letter file", str(path))
        claimed = path.with_name(f"{path.name}{CLAIM_MARK}{os.getpid()}-{time.time_ns()}")
        os.rename(path, claimed)
    except BaseException:
        _descriptors.close(fd)
        raise
    return Claim(claimed, fd)
