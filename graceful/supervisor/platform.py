"""The supervisor's platform seam: what differs between POSIX and Windows, and nothing else.

                 POSIX                                Windows
    start        posix_spawn, descriptors (spawn.py)  a subprocess, handles, socket.share
                                                      (windows_spawn.py)
    exit         SIGCHLD, waitpid(-1) (reaper.py)     a thread waiting on each process
    pipes        the loop's readers                   a thread reading each pipe
    orders       signals (orders.py)                  words on the worker's control pipe
    kill         SIGKILL to its process group         TerminateJobObject (windows_job.py)
    leftovers    its process group, SIGTERM then      its Job object, ended once it exits
                 SIGKILL (workers.end_leftovers)

Everything else (workers.py, rolling.py, supervisor.py, launch.py) is the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from graceful.supervisor import orders

WINDOWS = sys.platform == "win32"
OnData = Callable[[bytes], None]  # a chunk read; b"" once the pipe has ended
ExitCallback = Callable[[int], None]


class PipeWatch(Protocol):
    def finish(self) -> None:
        """The writer has exited: deliver what the pipe holds now (bounded)."""

    def stop(self) -> None:
        """No more deliveries; the descriptor is closed."""


class Reaper(Protocol):
    def install(self, loop: asyncio.AbstractEventLoop) -> None: ...
    def uninstall(self) -> None: ...
    def watch(self, pid: int, on_exit: ExitCallback) -> None: ...
    def reap(self) -> None: ...


def new_reaper() -> Reaper:
    if WINDOWS:
        return ThreadReaper()
    from graceful.supervisor.reaper import Reaper as SigchldReaper

    return SigchldReaper()


def watch_pipe(loop: asyncio.AbstractEventLoop, fd: int, on_data: OnData,
               size: int = 65536) -> PipeWatch:
    return ThreadPipe(loop, fd, on_data, size) if WINDOWS else LoopPipe(loop, fd, on_data, size)


def tell(pid: int, order: int, source: str = "") -> None:
    """Give worker `pid` an order (orders.py); nothing if it has gone. `source`: what asked
    for a stop (a signal says it by itself)."""
    if WINDOWS:
        from graceful.supervisor import windows_spawn

        word = orders.WORDS.get(order, "stop")
        windows_spawn.tell(pid, f"{word} {source}".strip())
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, order)


def kill_group(pid: int) -> None:
    """End worker `pid` at once, and what it started (its process group; on Windows its
    Job object)."""
    if WINDOWS:
        from graceful.supervisor import windows_spawn

        windows_spawn.kill(pid)
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, orders.KILL)


class LoopPipe:
    """POSIX: the loop's reader, one non-blocking read each time the pipe is readable."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, on_data: OnData,
                 size: int) -> None:
        self._loop, self._fd, self._on_data, self._size = loop, fd, on_data, size
        self._open = True
        os.set_blocking(fd, False)
        loop.add_reader(fd, self._read)

    def _read(self) -> bool:
        """Whether there may be more now."""
        if not self._open:
            return False
        try:
            chunk = os.read(self._fd, self._size)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        self._on_data(chunk)
        return bool(chunk)

    def finish(self) -> None:
        for _ in range(64):  # what is buffered, bounded
            if not self._read():
                return

    def stop(self) -> None:
        if self._open:
            self._open = False
            self._loop.remove_reader(self._fd)
            with contextlib.suppress(OSError):
                os.close(self._fd)


class ThreadPipe:
    """Windows: the Proactor loop has no readers for pipes; a thread reads, blocking, and
    hands each chunk to the loop. The thread ends at the pipe's end (the worker and what it
    started have all closed it); a pipe stopped before that is closed by its thread then."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, on_data: OnData,
                 size: int) -> None:
        self._loop, self._fd, self._on_data, self._size = loop, fd, on_data, size
        self._open = True
        self.ended = threading.Event()
        threading.Thread(target=self._run, daemon=True, name=f"graceful-pipe-{fd}").start()

    def _run(self) -> None:
        try:
            while True:
                try:
                    chunk = os.read(self._fd, self._size)
                except OSError:
                    chunk = b""
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    self._loop.call_soon_threadsafe(self._deliver, chunk)
                if not chunk:
                    return
        finally:
            self.ended.set()
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def _deliver(self, chunk: bytes) -> None:
        if self._open:
            self._on_data(chunk)

    def finish(self) -> None:
        pass  # the thread delivers to the end by itself

    def stop(self) -> None:
        self._open = False


class ThreadReaper:
    """Windows: a thread per worker waits for its process to end."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def uninstall(self) -> None:
        pass

    def reap(self) -> None:
        pass

    def watch(self, pid: int, on_exit: ExitCallback) -> None:
        from graceful.supervisor import windows_spawn

        loop = self._loop
        assert loop is not None

        def wait() -> None:
            code = windows_spawn.wait(pid)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(on_exit, code)

        threading.Thread(target=wait, daemon=True, name=f"graceful-reaper-{pid}").start()
