"""Reap every child that exits, and tell the supervisor which of its workers it was.

waitpid(-1) rather than one wait per worker: as PID 1 of a container (or a subreaper) the
supervisor inherits the orphans of the workers' own children, and a zombie left unreaped
there is a process-table entry lost for the container's life.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable

_UNCLAIMED_KEPT = 64
ExitCallback = Callable[[int], None]  # called with os.waitstatus_to_exitcode's code


class Reaper:
    def __init__(self) -> None:
        self._watched: dict[int, ExitCallback] = {}
        # exits reaped before their pid was watched (a worker that dies at once); others'
        # (orphans) are kept too, bounded, and dropped oldest first
        self._unclaimed: dict[int, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_signal_handler(signal.SIGCHLD, self.reap)
        become_subreaper()

    def uninstall(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                self._loop.remove_signal_handler(signal.SIGCHLD)

    def watch(self, pid: int, on_exit: ExitCallback) -> None:
        self._watched[pid] = on_exit
        self.reap()
        if (code := self._unclaimed.pop(pid, None)) is not None:
            self._watched.pop(pid)(code)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if (on_exit := self._watched.pop(pid, None)) is not None:
                on_exit(code)
            else:
                self._unclaimed[pid] = code
                while len(self._unclaimed) > _UNCLAIMED_KEPT:
                    del self._unclaimed[next(iter(self._unclaimed))]


PR_SET_CHILD_SUBREAPER = 36
WORKER_PID_ENV = b"GRACEFUL_WORKER_PID="  # in every worker's environment (spawn.py)


def become_subreaper() -> None:
    """Linux: the orphans of our workers' children (a daemon that left its worker's
    process group with setsid) become ours, not init's, so that they can be ended with the
    worker that started them (orphans_of) rather than pile up, one per restart."""
    if not sys.platform.startswith("linux") or os.getpid() == 1:  # PID 1 is one already
        return
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def orphans_of(worker_pid: int) -> list[int]:
    """Our children that worker `worker_pid` started (its variable in their environment)
    and left to us: not its own children any more, nor in its process group."""
    me, mark = os.getpid(), WORKER_PID_ENV + str(worker_pid).encode() + b"\0"
    found = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == worker_pid:
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    parent = int(stat.read().rsplit(b")", 1)[1].split()[1])
                if parent != me:
                    continue
                with open(f"/proc/{name}/environ", "rb") as environ:
                    if mark in b"\0" + environ.read():
                        found.append(int(name))
            except (OSError, ValueError, IndexError):
                continue
    return found
