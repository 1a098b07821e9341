"""Where a Windows service's log lines go: a file rotated by size (and by age) that never
raises into the runtime, and a memory buffer for the lines written before the file is known.
Rotated files are compressed and expire by the writer's Retention (log_retention.py).

A service has no console (sys.stdout and sys.stderr are None), so a log call that raises
would surface in whatever the runtime was doing (a stop request included, which the SCM
would then wait for in vain). Here a line that cannot be written is dropped and counted,
and the count is written as a `log.dropped` line as soon as the file takes lines again.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graceful.windows.log_retention import Housekeeper, Retention, shift, started_at

LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5
# A rotation that failed (another process holds NAME.log open without FILE_SHARE_DELETE: a
# log viewer, `Get-Content -Wait`; a full disk) is tried again this much later; meanwhile
# lines go on into the current file, as nssm does.
ROTATE_RETRY_S = 30.0
# A file that cannot be opened (or written) is tried again this much later.
REOPEN_RETRY_S = 1.0

Replace = Callable[[Path, Path], None]


def _default_replace(src: Path, dst: Path) -> None:
    os.replace(src, dst)


class RotatingWriter:
    """A text stream for structlog and logging that appends whole lines to `path` and rotates
    it by size. It never raises: `dropped` counts the lines it could not write,
    `rotate_failures` the rotations that failed, `error` is the last error's text."""

    def __init__(self, path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS,
                 *, replace: Replace = _default_replace,
                 clock: Callable[[], float] = time.monotonic,
                 retention: Retention | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.path, self._max, self._backups = Path(path), max_bytes, backups
        self._replace, self._clock, self._wall = replace, clock, wall
        self.retention = retention or Retention()
        self.housekeeper = Housekeeper(self.path, backups, self.retention, wall)
        self._housekeeping_reported = 0
        self._housekeeping_error: str | None = None
        self._born = 0.0  # wall time the current file was begun
        self._lock = threading.Lock()
        self._file: Any = None
        self._size = 0
        self._partial = ""
        self._torn = False
        self._reopen_at = 0.0
        self._rotate_at = 0.0
        self.dropped = 0
        self._dropped_reported = 0
        self.rotate_failures = 0
        self.error: str | None = None
        self._open()
        self.housekeeper.resume()

    def finish(self, timeout: float) -> None:
        """Wait (up to `timeout`) for the compression under way: a process that ends
        without it leaves its last rotated file uncompressed (the next start finishes it)."""
        self.housekeeper.wait(timeout)

    def write(self, text: str) -> int:
        with self._lock:
            # print() writes the message and the newline apart: write whole lines only.
            self._partial += text
            if "\n" not in self._partial:
                return len(text)
            lines, _, self._partial = self._partial.rpartition("\n")
            self._write_line(lines + "\n")
        return len(text)

    def flush(self) -> None:
        pass  # every line is written unbuffered

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        with self._lock:
            self._close_file()

    # -- under the lock ----------------------------------------------------------------

    def _write_line(self, line: str) -> None:
        count = line.count("\n")
        if self._file is None and not (self._clock() >= self._reopen_at and self._open()):
            self.dropped += count
            return
        unreported = self.dropped - self._dropped_reported
        if unreported:
            if not self._put(self._note("log.dropped", dropped=unreported, error=self.error)):
                self.dropped += count
                return
            self._dropped_reported += unreported
        failures, error = self.housekeeper.failures, self.housekeeper.error
        if failures > self._housekeeping_reported:
            self._housekeeping_reported = failures
            if error != self._housekeeping_error:  # once per cause, not at every rotation
                self._housekeeping_error = error
                self._put(self._note("log.housekeeping_failed", error=error,
                                     failures=failures))
        if not self._put(line):
            self.dropped += count
            return
        if self._rotation_due() and self._clock() >= self._rotate_at:
            self._rotate()

    def _rotation_due(self) -> bool:
        if self._size >= self._max:
            return True
        age = self.retention.max_age_s
        return age is not None and self._size > 0 and self._wall() - self._born >= age

    def _put(self, text: str) -> bool:
        data = text.encode("utf-8", errors="replace")
        if self._torn:  # a cut line could not be taken back: end it, start a fresh one
            data = b"\n" + data
        before = self._size
        try:
            while data:
                written = self._file.write(data)
                self._size += written
                data = data[written:]
            self._torn = False
        except OSError as err:  # a full disk, a volume gone
            self.error = f"{type(err).__name__}: {err}"
            self._take_back(before)
            self._close_file()
            self._reopen_at = self._clock() + REOPEN_RETRY_S
            return False
        return True

    def _take_back(self, size: int) -> None:
        """Cut the file back to `size`, where the failed line began: part of it may be in
        the file even when the error says nothing of it, and a reader of JSON lines would
        stop at it. Only if that fails is the cut line ended by the next one."""
        try:
            fd = self._file.fileno()
            if os.fstat(fd).st_size > size:
                os.ftruncate(fd, size)
            self._size = size
        except OSError:
            self._torn = True

    def _open(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115
            self._size = self._file.seek(0, os.SEEK_END)
            self._born = (started_at(os.fstat(self._file.fileno()), self._wall) if self._size
                          else self._wall())
        except OSError as err:
            self.error = f"{type(err).__name__}: {err}"
            self._file = None
            self._reopen_at = self._clock() + REOPEN_RETRY_S
            return False
        return True

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _rotate(self) -> None:
        # Our own handle must be closed first: Windows cannot rename a file open without
        # FILE_SHARE_DELETE, which Python's open() does not give.
        self._close_file()
        self.housekeeper.wait()  # the last rotation's compression of NAME.1, if still going
        try:
            shift(self.path, self._backups, self._replace)
            self._replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        except OSError as err:
            self.rotate_failures += 1
            self.error = f"{type(err).__name__}: {err}"
            self._rotate_at = self._clock() + ROTATE_RETRY_S
            if self._open():
                self._put(self._note("log.rotate_failed", error=self.error,
                                     retry_in_s=ROTATE_RETRY_S, size=self._size))
            return
        self._open()
        self.housekeeper.after_rotation()

    @staticmethod
    def _note(event: str, **fields: Any) -> str:
        """A line in the shape of the JSON log, written by the writer itself."""
        now = datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")
        return json.dumps({**fields, "event": event, "level": "warning",
                           "timestamp": now}) + "\n"


class MemoryLog:
    """Keeps the lines logged before the log file is known; `replay` hands them on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.text = ""

    def write(self, text: str) -> int:
        with self._lock:
            self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def replay(self, stream: Any) -> None:
        with self._lock:
            text, self.text = self.text, ""
        if text:
            stream.write(text)
