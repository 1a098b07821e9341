"""A restart's successor, its side of the hand-over: say "ready" to the old process (and move
the log to the stderr both share), and with a checkpoint take over its final state before
accepting (graceful/restart.py has the whole picture)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Protocol

from graceful.logs import get_logger
from graceful.stop import StopObserver
from graceful.successor import LOG_FD_ENV, PREDECESSOR_ENV, READY_FD_ENV

if TYPE_CHECKING:
    from graceful.checkpoint import Checkpointer

log = get_logger()

LOCK_FD_ENV = "GRACEFUL_RESTART_LOCK_FD"  # the checkpoint's lock, adopted by the successor
GO_FD_ENV = "GRACEFUL_RESTART_GO_FD"  # closes once the predecessor's final flush is done


class Takeover(Protocol):
    """What the runtime of a restart's successor asks of the hand-over."""

    lock_fd: int | None  # the predecessor's checkpoint lock, to adopt

    async def before_accepting(self, checkpointer: Checkpointer | None,
                               state: dict[str, Any]) -> None:
        """Return when the successor may accept, its state the predecessor's final one."""


class SuccessorReport(StopObserver):
    """In a successor: once serving, move the log to the shared stderr and say "ready".

    With a checkpoint, "ready" is said before accepting (app built, on_startup run); then it
    waits for the predecessor's final flush, takes that state (keys the predecessor removed
    are removed, the others replaced in place: handlers hold the same dict), and accepts.
    Connections meanwhile wait in the kernel's queue: that wait is the pause of the design,
    logged as waited_s in `restart.took_over`."""

    def __init__(self, ready_fd: int, log_fd: int | None, lock_fd: int | None = None,
                 go_fd: int | None = None) -> None:
        self._ready_fd: int | None = ready_fd
        self._log_fd, self.lock_fd, self._go_fd = log_fd, lock_fd, go_fd

    @classmethod
    def from_environment(cls) -> SuccessorReport | None:
        fds = {}
        for name in (READY_FD_ENV, LOG_FD_ENV, LOCK_FD_ENV, GO_FD_ENV):
            value = os.environ.pop(name, None)
            if value is not None and value.isdigit():
                fds[name] = int(value)
                with contextlib.suppress(OSError):  # not for the app's own subprocesses
                    os.set_inheritable(int(value), False)
        os.environ.pop(PREDECESSOR_ENV, None)
        if READY_FD_ENV not in fds:
            return None
        return cls(fds[READY_FD_ENV], fds.get(LOG_FD_ENV), fds.get(LOCK_FD_ENV),
                   fds.get(GO_FD_ENV))

    async def before_accepting(self, checkpointer: Checkpointer | None,
                               state: dict[str, Any]) -> None:
        if self._go_fd is None or checkpointer is None:
            return  # no checkpoint: both accept during the overlap
        first = dict(checkpointer.restored.state) if checkpointer.restored else {}
        self.ready()
        started = time.perf_counter()
        await _closed(self._go_fd)
        self._go_fd = None
        final = checkpointer.reload()
        final_state = final.state if final is not None else {}
        for key in first.keys() - final_state.keys():
            state.pop(key, None)
        state.update(final_state)
        log.info("restart.took_over", generation=checkpointer.generation,
                 keys=len(final_state), waited_s=round(time.perf_counter() - started, 4))

    def ready(self) -> None:
        if self._ready_fd is None:  # said already (before_accepting)
            return
        if self._log_fd is not None:
            with contextlib.suppress(OSError):
                sys.stderr.flush()
                os.dup2(self._log_fd, 2)
            with contextlib.suppress(OSError):
                os.close(self._log_fd)
            self._log_fd = None
        with contextlib.suppress(OSError):  # the predecessor died: we serve all the same
            os.write(self._ready_fd, b"ready\n")
        with contextlib.suppress(OSError):
            os.close(self._ready_fd)
        self._ready_fd = None


async def _closed(fd: int) -> None:
    """Until the other end of the pipe `fd` is closed (its writer done, or dead)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data and not done.done():
            done.set_result(None)

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
