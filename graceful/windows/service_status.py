"""SERVICE_STATUS reports for graceful's Windows service: what the SCM is told and when.

START_PENDING with a rising checkpoint and a wait hint from what is left of the startup
budget, RUNNING, PAUSE/CONTINUE_PENDING, STOP_PENDING with a checkpoint that rises at every
phase and drain tick (and while the exit waits for the app's threads), STOPPED with our exit
code. Thread-safe: the SCM's thread, the start ticker and the loop all report.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from graceful.bridge import win32 as w
from graceful.bridge.controls import PauseAction
from graceful.bridge.stop import StopObserver
from graceful.config import Config

HINT_SLACK_S = 2.0  # added to every wait hint: the loop closing, the process exiting
START_TICK_S = 1.0  # START_PENDING progress while the app starts
ACCEPTED_STARTING = (w.SERVICE_ACCEPT_STOP | w.SERVICE_ACCEPT_SHUTDOWN
                     | w.SERVICE_ACCEPT_PRESHUTDOWN)
ACCEPTED = ACCEPTED_STARTING | w.SERVICE_ACCEPT_PAUSE_CONTINUE  # RUNNING, PAUSED
PENDING = (w.SERVICE_START_PENDING, w.SERVICE_STOP_PENDING, w.SERVICE_PAUSE_PENDING,
           w.SERVICE_CONTINUE_PENDING)


class ServiceReporter(StopObserver):
    """Turns the runtime's progress into SERVICE_STATUS reports (thread-safe: the SCM's
    thread, the start ticker and the loop all report). Checkpoints rise strictly while
    pending; nothing is reported after STOPPED."""

    def __init__(self, win32: w.Win32, handle: Any, stop_budget_s: float) -> None:
        self._win32, self._handle, self.budget_s = win32, handle, stop_budget_s
        self.startup_budget_s = Config().startup_timeout
        self._lock = threading.Lock()
        self._checkpoint = 0
        self._final = False
        self._started_at = 0.0
        self._ticker = threading.Event()
        self.state = w.SERVICE_STOPPED
        self.exit_code: int | None = None

    def _report(self, state: int, *, hint_s: float = 0.0, accepted: int = 0,
                exit_code: int = 0, only_from: tuple[int, ...] = ()) -> None:
        with self._lock:
            if self._final:
                return  # nothing after STOPPED
            if only_from and self.state not in only_from:
                return  # e.g. a start tick that lost the race with a stop control
            pending = state in PENDING
            if pending and state != self.state:
                self._checkpoint = 0
            self._checkpoint = self._checkpoint + 1 if pending else self._checkpoint
            self.state = state
            self._final = state == w.SERVICE_STOPPED
            status = w.ServiceStatus(
                state, accepted, w.ERROR_SERVICE_SPECIFIC_ERROR if exit_code else 0, exit_code,
                self._checkpoint if pending else 0, math.ceil(hint_s * 1000) if pending else 0)
            self._win32.set_service_status(self._handle, status)

    def starting(self) -> None:
        """START_PENDING, accepting STOP (a stop ends the start), then progress every
        START_TICK_S with a wait hint from what is left of the startup budget, until the
        state changes or the budget is spent (then the SCM's own timeout shows the hang).
        Nothing after a stop control that came first: pending states only go forward."""
        self._started_at = self._win32.monotonic()
        self._report(w.SERVICE_START_PENDING, accepted=ACCEPTED_STARTING,
                     hint_s=self.startup_budget_s + HINT_SLACK_S,
                     only_from=(w.SERVICE_STOPPED,))
        threading.Thread(target=self._tick_start, name="graceful.start-progress",
                         daemon=True).start()

    def _start_left(self) -> float:
        return self.startup_budget_s - (self._win32.monotonic() - self._started_at)

    def _tick_start(self) -> None:
        while not self._ticker.wait(START_TICK_S):
            left = self._start_left()
            if self.state != w.SERVICE_START_PENDING or left <= 0:
                return
            self._report(w.SERVICE_START_PENDING, accepted=ACCEPTED_STARTING,
                         hint_s=left + HINT_SLACK_S, only_from=(w.SERVICE_START_PENDING,))

    def end_start_progress(self) -> None:
        self._ticker.set()

    def stop_pending(self, time_left_s: float | None = None) -> None:
        left = self.budget_s if time_left_s is None else time_left_s
        self._report(w.SERVICE_STOP_PENDING, hint_s=max(left, 0.0) + HINT_SLACK_S)

    def pause_pending(self, action: PauseAction) -> bool:
        """PAUSE_PENDING (from RUNNING) or CONTINUE_PENDING (from PAUSED or PAUSE_PENDING),
        with the pause's drain as the hint; False (nothing reported) from another state."""
        pause = action is PauseAction.PAUSE
        state = w.SERVICE_PAUSE_PENDING if pause else w.SERVICE_CONTINUE_PENDING
        sources = ((w.SERVICE_RUNNING,) if pause
                   else (w.SERVICE_PAUSED, w.SERVICE_PAUSE_PENDING))
        with self._lock:
            if self.state not in sources:
                return False
        self._report(state, accepted=ACCEPTED, hint_s=self.budget_s + HINT_SLACK_S)
        return True

    def final(self, code: int) -> None:
        self._ticker.set()
        self._report(w.SERVICE_STOPPED, exit_code=int(code))

    # StopObserver: called on the loop thread
    def ready(self) -> None:
        self._ticker.set()
        self._report(w.SERVICE_RUNNING, accepted=ACCEPTED)

    def paused(self) -> None:
        self._report(w.SERVICE_PAUSED, accepted=ACCEPTED, only_from=(w.SERVICE_PAUSE_PENDING,))

    def resume_failed(self, error: str) -> None:
        """PAUSED again, not CONTINUE_PENDING for ever: a later CONTINUE retries."""
        self._report(w.SERVICE_PAUSED, accepted=ACCEPTED,
                     only_from=(w.SERVICE_CONTINUE_PENDING,))

    def resumed(self) -> None:
        self._report(w.SERVICE_RUNNING, accepted=ACCEPTED,
                     only_from=(w.SERVICE_CONTINUE_PENDING,))

    def phase(self, name: str, time_left_s: float) -> None:
        self.stop_pending(time_left_s)

    def drain_progress(self, in_flight: int, time_left_s: float) -> None:
        self.stop_pending(time_left_s)

    def stopped(self, exit_code: int) -> None:
        self.exit_code = exit_code
        self.stop_pending(0.0)
