"""POSIX signals as stop requests: SIGTERM, SIGINT, SIGQUIT; SIGHUP as a restart request.
SIGUSR1 pauses and SIGUSR2 continues (graceful/lifecycle/pause.py): two signals rather than
a toggle, so that a repeat is harmless and a script says what it wants; not SIGTSTP/SIGCONT, which
belong to job control (Ctrl+Z must still suspend, and every `fg` or debugger detach sends
SIGCONT).

`signal.signal` rather than `loop.add_signal_handler`, so that the same bridge works before
the loop exists (a SIGTERM that arrives during imports is kept, not fatal) and on any loop.
The handler only records the signal and hands it over (gunicorn: no work in handlers).
"""

from __future__ import annotations

import signal
from types import FrameType

from graceful.bridge import Deliver, Handover
from graceful.bridge.controls import PauseAction, PauseRequest
from graceful.bridge.stop import RestartRequest, StopRequest, StopSource

STOP_SIGNALS = {
    signal.SIGTERM: StopSource.SIGTERM,
    signal.SIGINT: StopSource.SIGINT,
    signal.SIGQUIT: StopSource.SIGQUIT,
}
PAUSE_SIGNALS = {signal.SIGUSR1: PauseAction.PAUSE, signal.SIGUSR2: PauseAction.RESUME}


class PosixSignalBridge:
    """Turns stop signals into stop requests.

    `capture()` may be called early (before the loop exists): signals that arrive before
    `install()` are queued and delivered at install, in order. Whoever captures restores:
    `uninstall()` restores the previous handlers only if `install()` set them; handlers
    captured early stay until `release()`. The CLI captures and never releases, so a signal
    after the runtime has finished is ignored up to the process's exit, not fatal (-15).
    """

    def __init__(self) -> None:
        self._previous: dict[int, object] = {}
        self._handover = Handover()
        self._controls = Handover()  # pause and continue: to the runtime only
        self._release_on_uninstall = False

    def capture(self) -> None:
        if self._previous:
            return
        for signum in (*STOP_SIGNALS, signal.SIGHUP, *PAUSE_SIGNALS):
            self._previous[signum] = signal.signal(signum, self._on_signal)

    def install(self, deliver: Deliver) -> None:
        self._release_on_uninstall = not self._previous
        self.capture()
        self._handover.connect(deliver)

    def install_controls(self, deliver: Deliver) -> None:
        """Pause and continue signals to `deliver` (the runtime's); until then, kept."""
        self._controls.connect(deliver)

    def uninstall(self) -> None:
        self._handover.disconnect()  # later signals are kept, never delivered: ignored
        self._controls.disconnect()
        if self._release_on_uninstall:
            self.release()

    def release(self) -> None:
        """Restore the handlers that were there before `capture()`."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        signum = signal.Signals(signum)
        if signum in PAUSE_SIGNALS:
            self._controls(PauseRequest(PAUSE_SIGNALS[signum], signum.name))  # type: ignore[arg-type]
            return
        if signum == signal.SIGHUP:  # a worker's: stop, replaced (graceful/lifecycle/runner.py)
            self._handover(RestartRequest("SIGHUP"))  # type: ignore[arg-type]
            return
        self._handover(StopRequest(STOP_SIGNALS[signum]))
