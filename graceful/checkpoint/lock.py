"""One writer per checkpoint: an exclusive lock on PATH.lock for the life of the process.

POSIX: `fcntl.flock` (advisory; released by the OS when the process ends, however it
ends). Windows: `msvcrt.locking` on one byte far past the pid, so that the pid stays
readable by the process that is refused. The holder writes its pid into the file; the file
itself is left in place at exit (removing it would race with the next holder).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from graceful.errors import CheckpointError
from graceful.host.processes import alive

_WINDOWS_LOCK_OFFSET = 1 << 30
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


class CheckpointLock:
    """Held from the start (before the file is read) to the end of the process."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def acquire(cls, checkpoint: Path, *, handed_over_fd: int | None = None) -> CheckpointLock:
        """Take the lock, or raise CheckpointError naming the pid that holds it.

        `handed_over_fd` is a worker's: the supervisor (graceful/supervisor/) holds the lock
        for the service's whole life and gives each worker its descriptor (the same open
        file, so the same lock: never free for a third process). The pid in the file stays
        the supervisor's, the one a refused process should be told of.
        """
        path = lock_path(checkpoint)
        if handed_over_fd is not None:
            _ensure_same_file(path, handed_over_fd)
            return cls(path, handed_over_fd)
        try:
            writable = os.open(path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW, 0o600)
        except OSError as err:
            raise CheckpointError(f"cannot open the lock file {path}: "
                                  f"{err.strerror or err}") from err
        try:
            # The lock is held on a read-only descriptor: one open for writing for the life
            # of the process would keep the volume from being remounted read-only.
            fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW)
            try:
                _lock(fd)
            except OSError:
                os.close(fd)
                raise CheckpointError(
                    f"checkpoint {checkpoint} is in use by another process ({_holder(writable)}"
                    f", holding {path.name}): refusing to start a second writer") from None
            os.ftruncate(writable, 0)
            os.write(writable, f"{os.getpid()}\n".encode())
        finally:
            os.close(writable)
        return cls(path, fd)

    def release(self) -> None:
        if self.fd < 0:
            return
        with contextlib.suppress(OSError):
            os.close(self.fd)  # closing the descriptor releases the lock
        self.fd = -1


def _holder(fd: int) -> str:
    """Who holds the lock, as the refused process can tell: the pid that took it, or, when
    that one has exited, a process it started (a supervisor killed while its worker still
    drains, holding the lock it inherited)."""
    pid = _read_pid(fd)
    if pid.isdigit() and not alive(int(pid)):
        return (f"started by pid {pid}, which has exited: one of its workers still runs "
                "and holds the lock until it exits")
    return f"pid {pid}"


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        return str(int(os.read(fd, 32).split(b"\n")[0]))
    return "unknown"


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _lock(fd: int) -> None:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        os.lseek(fd, 0, os.SEEK_SET)
else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _ensure_same_file(path: Path, handed_over_fd: int) -> None:
    """The lock the supervisor handed over must be the one at `path`: a relative checkpoint
    path can name another file in a worker (started in the folder a deploy switched a
    symlink to), and adopting the lock for it would start from an empty state while the
    state is flushed elsewhere."""
    held = os.fstat(handed_over_fd)
    try:
        here = os.stat(path)
    except OSError:
        here = None
    if here is None or (here.st_dev, here.st_ino) != (held.st_dev, held.st_ino):
        raise CheckpointError(
            f"the checkpoint's lock {path} is another file than the one the supervisor "
            f"holds ({_fd_path(handed_over_fd)}): a relative --checkpoint in a folder a deploy "
            "switched? Give it an absolute path outside the release")


def _fd_path(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.readlink(f"/proc/self/fd/{fd}")
    return f"descriptor {fd}"
