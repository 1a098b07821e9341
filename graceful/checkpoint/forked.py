"""Work on a copy-on-write image of the process, done by a forked child (POSIX).

Serialising a large state takes the GIL for as long as the C encoder runs (a thread would
block the loop just as much), and copying it first costs a walk of the same length. A
fork is the copy the kernel makes lazily, in a few milliseconds: the child sees the state
exactly as it was at the fork (taken on the loop, between two callbacks, so consistent),
does the work, writes its answer to a pipe and ends; the parent goes on serving. Memory:
the pages the child touches (the state's objects, their reference counts) are copied.

The child only runs the work given (the C JSON encoder, plain Python, pickle): no import,
no logging, no lock another thread might have held at the fork. Signals are blocked across
the fork and the child resets every handler to the default before it unblocks them, so a
signal sent to the process group (systemd's KillMode=control-group, a terminal's Ctrl-C)
ends the child instead of reaching the parent's handlers a second time through the wakeup
descriptor that they share.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import warnings
from collections.abc import Callable
from typing import Any

_OK, _FAILED = b"0", b"1"


def available() -> bool:
    return hasattr(os, "fork") and hasattr(signal, "pthread_sigmask")


class Child:
    """A forked child at work; `result()` (blocking: call it off the loop) is what the work
    returned, or raises ChildFailed."""

    def __init__(self, pid: int, read_fd: int) -> None:
        self.pid, self._fd = pid, read_fd

    def result(self) -> Any:
        chunks = []
        try:
            while chunk := os.read(self._fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(self._fd)
            with contextlib.suppress(ChildProcessError):  # reaped by someone else
                os.waitpid(self.pid, 0)
        data = b"".join(chunks)
        if data[:1] == _OK:
            return pickle.loads(data[1:])
        raise ChildFailed(data[1:].decode(errors="replace") or "it ended without an answer")


class ChildFailed(Exception):
    """The child raised, or ended (a signal) before it answered."""


def start(work: Callable[[], Any]) -> Child:
    """Fork; the child runs `work()` and answers with its pickled result. Call it on the
    thread whose consistency matters (the loop's): the child sees the process as it is."""
    read_fd, write_fd = os.pipe()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        with warnings.catch_warnings():
            # Python 3.12 warns at a fork with threads running: the child touches no lock.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            _run_child(work, read_fd, write_fd)  # does not return
    except BaseException:
        os.close(read_fd)
        os.close(write_fd)
        raise
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    os.close(write_fd)
    return Child(pid, read_fd)


def _run_child(work: Callable[[], Any], read_fd: int, write_fd: int) -> None:
    code = 1
    try:
        os.close(read_fd)
        _default_signals()
        answer = _OK + pickle.dumps(work(), protocol=pickle.HIGHEST_PROTOCOL)
        code = 0
    except BaseException as err:
        answer = _FAILED + f"{type(err).__name__}: {err}".encode(errors="replace")
    try:
        view = memoryview(answer)
        while view:
            view = view[os.write(write_fd, view):]
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _default_signals() -> None:
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
    for number in signal.valid_signals():
        if signal.getsignal(number) not in (signal.SIG_DFL, signal.SIG_IGN):
            with contextlib.suppress(ValueError, OSError, RuntimeError):
                signal.signal(number, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
