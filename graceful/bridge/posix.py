"""POSIX signals as stop requests: SIGTERM, SIGINT, SIGQUIT. SIGHUP is reserved for restart.

`signal.signal` rather than `loop.add_signal_handler`, so that the same bridge works before
the loop exists (a SIGTERM that arrives during imports is kept, not fatal) and on any loop.
The handler only records the signal and hands it over (gunicorn: no work in handlers).
"""

from __future__ import annotations

import signal
from types import FrameType

from graceful.bridge import Deliver, Handover
from graceful.stop import StopRequest, StopSource

STOP_SIGNALS = {
    signal.SIGTERM: StopSource.SIGTERM,
    signal.SIGINT: StopSource.SIGINT,
    signal.SIGQUIT: StopSource.SIGQUIT,
}


class PosixSignalBridge:
    """Turns stop signals into stop requests; restores the previous handlers on uninstall.

    `capture()` may be called early (before the loop exists): signals that arrive before
    `install()` are queued and delivered at install, in order.
    """

    def __init__(self) -> None:
        self._previous: dict[int, object] = {}
        self._handover = Handover()

    def capture(self) -> None:
        if self._previous:
            return
        for signum in STOP_SIGNALS:
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def install(self, deliver: Deliver) -> None:
        self.capture()
        self._handover.connect(deliver)

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()
        self._handover.disconnect()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._handover(StopRequest(STOP_SIGNALS[signal.Signals(signum)]))
