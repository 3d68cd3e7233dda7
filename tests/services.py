"""A service process for fault tests that end it from outside (SIGTERM, SIGKILL):
``faults/writer_process.py`` writing through a write-behind cache as fast as it can, with its
last acknowledged write readable after it ended."""

from __future__ import annotations

import queue
import struct
import subprocess
import sys
import threading
from pathlib import Path

from multilayercache import RedisLayer

CHILD = Path(__file__).parent / "faults" / "writer_process.py"


class Service:
    """``writer_process.py`` running, its output lines collected as they come."""

    def __init__(self, url: str, prefix: str, folder: Path, *options: str) -> None:
        self.ack_path = folder / "ack"
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), url, prefix, str(self.ack_path), *options],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr = ""

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())

    def wait_for(self, line: str, timeout: float = 20) -> None:
        while True:
            try:
                got = self.lines.get(timeout=timeout)
            except queue.Empty:
                self.process.kill()
                self.end()
                raise AssertionError(f"no {line!r} from the service: {self.stderr()}") from None
            if got == line:
                return

    def end(self, timeout: float = 30) -> int:
        """Wait for the process to end (killed after ``timeout``); its exit status."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the service did not end") from None
        finally:
            self._reader.join(5)
            assert self.process.stdout is not None and self.process.stderr is not None
            self._stderr = self.process.stderr.read()[-3000:]
            self.process.stdout.close()
            self.process.stderr.close()
        return status

    def stderr(self) -> str:
        return self._stderr if self.process.poll() is not None else "(still running)"

    def acknowledged(self) -> int:
        return struct.unpack("<q", self.ack_path.read_bytes())[0]


def lost_writes(url: str, prefix: str, last: int) -> list[int]:
    """The acknowledged writes ``k{i}`` = ``i`` (i <= last) that are not in Redis."""
    layer = RedisLayer(url, prefix=prefix)
    missing = []
    try:
        for start in range(0, last + 1, 5000):
            indexes = range(start, min(start + 5000, last + 1))
            found = layer.get_many([f"k{index}" for index in indexes])
            missing += [index for index in indexes if found.get(f"k{index}") != index]
    finally:
        layer.close()
    return missing
