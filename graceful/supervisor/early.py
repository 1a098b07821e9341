"""Stop and restart signals that arrive while the supervisor starts, before its loop has
handlers: kept, and delivered once it has (otherwise SIGTERM would kill it with 143)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

CAUGHT = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP)


class EarlySignals:
    def __init__(self) -> None:
        self.received: list[int] = []

    @classmethod
    def capture(cls) -> EarlySignals:
        early = cls()
        for signum in CAUGHT:
            signal.signal(signum, early._record)
        return early

    def _record(self, signum: int, frame: Any) -> None:  # only records (a signal handler)
        self.received.append(signum)

    def replay(self, handlers: Callable[[int], None]) -> None:
        """Deliver what came early, in order, to the loop's handlers (which replace ours)."""
        received, self.received = self.received, []
        for signum in received:
            handlers(signum)
