"""Signals that arrive while the supervisor starts, before its loop has handlers: kept, and
delivered once it has (otherwise SIGTERM would kill it with 143, and SIGUSR1, a pause sent
as soon as a worker serves, would kill it outright: their default action)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

CAUGHT = tuple(getattr(signal, name) for name in (  # POSIX's (imported on Windows too)
    "SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2") if hasattr(signal, name))


class EarlySignals:
    _captured: EarlySignals | None = None

    def __init__(self) -> None:
        self.received: list[int] = []

    @classmethod
    def capture(cls) -> EarlySignals:
        """Hold them from now on (once per process: the command's entry point does it
        first thing, serve again)."""
        if cls._captured is None:
            early = cls._captured = cls()
            for signum in CAUGHT:
                signal.signal(signum, early._record)
            if hasattr(signal, "SIGCHLD"):
                # ignored by a parent (kept across exec), the kernel would reap our workers
                # itself: their deaths unseen, never replaced
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        return cls._captured

    def _record(self, signum: int, frame: Any) -> None:  # only records (a signal handler)
        self.received.append(signum)

    def replay(self, handlers: Callable[[int], None],
               only: tuple[int, ...] = CAUGHT) -> None:
        """Deliver what came early among `only`, in order, to the loop's handlers (which
        replace ours); the others stay for a later replay."""
        kept = []
        for signum in self.received:
            if signum in only:
                handlers(signum)
            else:
                kept.append(signum)
        self.received = kept
