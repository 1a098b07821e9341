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
