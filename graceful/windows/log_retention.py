"""What happens to the service's log files once rotated: gzip, then deletion by age and count.

Rotated files are NAME.1 (the newest) to NAME.<backups>, each NAME.N.gz once compressed.
Compression runs on a thread of its own (10 MB of JSON takes a few hundred ms to gzip,
which must not hold the log lock, and so the loop, that long); the next rotation waits for
it first. A compression that fails (a full disk) leaves NAME.N uncompressed, whole, and
removes its partial .gz: a backup is never lost to its compression. Nothing here raises:
failures are counted and described for the writer's `error`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

DAY_S = 24 * 3600.0
Replace = Callable[[Path, Path], None]


@dataclasses.dataclass(frozen=True)
class Retention:
    """A rotation policy beside the writer's size limit and backup count."""

    max_age_s: float | None = None  # rotate a file this old even if small
    compress: bool = False  # gzip rotated files (NAME.N.gz)
    keep_s: float | None = None  # delete rotated files older than this (by mtime)


# The Windows service's: a file a day at most, gzipped, kept two weeks (and LOG_BACKUPS).
SERVICE_RETENTION = Retention(max_age_s=DAY_S, compress=True, keep_s=14 * DAY_S)


def backups_of(path: Path) -> dict[int, Path]:
    """The rotated files of `path` by number; NAME.N.gz wins over a leftover NAME.N."""
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)(\.gz)?$")
    found: dict[int, Path] = {}
    with contextlib.suppress(OSError):
        for entry in path.parent.iterdir():
            match = pattern.match(entry.name)
            if match and (match.group(2) or int(match.group(1)) not in found):
                found[int(match.group(1))] = entry
    return found


def shift(path: Path, backups: int, replace: Replace) -> None:
    """NAME.N(.gz) -> NAME.N+1(.gz) from the oldest; those past `backups` are deleted.
    Raises OSError (the writer retries the rotation later)."""
    found = backups_of(path)
    for n in sorted(found, reverse=True):
        old = found[n]
        if n >= backups:
            old.unlink(missing_ok=True)
            continue
        suffix = ".gz" if old.name.endswith(".gz") else ""
        replace(old, path.with_name(f"{path.name}.{n + 1}{suffix}"))


class Housekeeper:
    """Compresses the newest rotated file and deletes the expired ones, off the lock."""

    def __init__(self, path: Path, backups: int, retention: Retention,
                 wall: Callable[[], float] = time.time) -> None:
        self.path, self.backups, self.retention, self._wall = path, backups, retention, wall
        self._thread: threading.Thread | None = None
        self.failures = 0
        self.error: str | None = None

    def after_rotation(self) -> None:
        """NAME.1 has just been made: compress it (on a thread) and prune."""
        if self.retention.compress:
            self._thread = threading.Thread(target=self._work, name="graceful.log-gzip",
                                            daemon=True)
            self._thread.start()
        else:
            self._prune()

    def resume(self) -> None:
        """At open: finish what a process that ended mid-compression left (it could not
        wait, or was killed): NAME.N compressed, a NAME.N whose .gz was complete deleted,
        partial .gz.tmp files deleted. On the same thread as a rotation's compression."""
        if not self.retention.compress:
            return
        pattern = re.compile(re.escape(self.path.name) + r"\.(\d+)(\.gz)?(\.tmp)?$")
        left: list[Path] = []
        with contextlib.suppress(OSError):
            for entry in self.path.parent.iterdir():
                match = pattern.match(entry.name)
                if match is None:
                    continue
                if match.group(3):
                    entry.unlink(missing_ok=True)  # a compression cut short
                elif not match.group(2):
                    left.append(entry)
        if left:
            self._thread = threading.Thread(target=self._finish, args=(left,),
                                            name="graceful.log-gzip", daemon=True)
            self._thread.start()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> None:
        """Until the compression under way (if any) is done."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self) -> None:
        self._compress(self.path.with_name(f"{self.path.name}.1"))
        self._prune()

    def _finish(self, left: list[Path]) -> None:
        for source in left:
            if source.with_name(source.name + ".gz").exists():
                # os.replace made the .gz whole before the source was to go
                with contextlib.suppress(OSError):
                    source.unlink()
            else:
                self._compress(source)
        self._prune()

    def _compress(self, source: Path) -> None:
        target = source.with_name(source.name + ".gz")
        partial = source.with_name(source.name + ".gz.tmp")
        try:
            with source.open("rb") as raw, gzip.open(partial, "wb", compresslevel=6) as packed:
                shutil.copyfileobj(raw, packed, 1 << 20)
            os.replace(partial, target)
            source.unlink()
        except OSError as err:
            self._failed(err)
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)

    def _prune(self) -> None:
        keep_s = self.retention.keep_s
        now = self._wall()
        for n, backup in backups_of(self.path).items():
            try:
                expired = keep_s is not None and now - backup.stat().st_mtime > keep_s
                if n > self.backups or expired:
                    backup.unlink()
            except FileNotFoundError:
                continue
            except OSError as err:
                self._failed(err)

    def _failed(self, err: OSError) -> None:
        self.failures += 1
        self.error = f"{type(err).__name__}: {err}"


def started_at(stat: os.stat_result, wall: Callable[[], float]) -> float:
    """When a log file found at open was begun: its creation time where the platform keeps
    one (Windows: st_ctime; BSD, macOS: st_birthtime); else its last write, which makes a
    file reopened after a long pause rotate that much later."""
    birth = getattr(stat, "st_birthtime", None)
    if birth is None and os.name == "nt":
        birth = stat.st_ctime
    return min(birth if birth is not None else stat.st_mtime, wall())
