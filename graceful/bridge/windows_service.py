"""The Windows service's stop source: SCM controls become stop requests; PAUSE and
CONTINUE become pause requests (graceful/lifecycle/pause.py); graceful's own control 129
becomes a restart request (new workers replace the old ones: graceful/windows/
service_workers.py).

The process the SCM starts, and how it reports to the SCM, are in graceful/windows/.
"""

from __future__ import annotations

from typing import Protocol

from graceful import logs
from graceful.bridge import Deliver, Handover
from graceful.bridge import win32 as w
from graceful.bridge.controls import PauseAction, PauseRequest
from graceful.bridge.stop import RestartRequest, StopRequest, StopSource

CONTROLS = {w.SERVICE_CONTROL_STOP: StopSource.SCM_STOP,
            w.SERVICE_CONTROL_SHUTDOWN: StopSource.SCM_SHUTDOWN,
            w.SERVICE_CONTROL_PRESHUTDOWN: StopSource.SCM_PRESHUTDOWN}
PAUSES = {w.SERVICE_CONTROL_PAUSE: PauseAction.PAUSE,
          w.SERVICE_CONTROL_CONTINUE: PauseAction.RESUME}
PAUSE_SOURCES = {PauseAction.PAUSE: "SCM_PAUSE", PauseAction.RESUME: "SCM_CONTINUE"}
# graceful's own control (the SCM leaves 128-255 to services): replace the workers, as
# SIGHUP does on POSIX; any SCM client may send it (`sc control NAME 129`).
SERVICE_CONTROL_RELOAD = 129
ERROR_CALL_NOT_IMPLEMENTED = 120  # HandlerEx's answer to a control it does not handle

_log = logs.get_logger()


class _Reporter(Protocol):
    def stop_pending(self) -> None: ...
    def pause_pending(self, action: PauseAction) -> bool: ...


class ServiceBridge:
    """The StopBridge of a service: SCM controls become stop requests. A control that comes
    before the loop runs is kept and delivered at install."""

    def __init__(self, reporter: _Reporter) -> None:
        self._reporter = reporter
        self._handover = Handover()
        self._controls = Handover()
        self.requested = False

    def install(self, deliver: Deliver) -> None:
        self._handover.connect(deliver)

    def install_controls(self, deliver: Deliver) -> None:
        self._controls.connect(deliver)

    def uninstall(self) -> None:
        self._handover.disconnect()
        self._controls.disconnect()

    def control(self, code: int) -> int:
        """The SCM's handler (its thread): answer at once, the stop runs on the loop."""
        action = PAUSES.get(code)
        if action is not None:
            if self._reporter.pause_pending(action):  # else not RUNNING/PAUSED: nothing to do
                self._controls(PauseRequest(action, PAUSE_SOURCES[action]))  # type: ignore[arg-type]
            return 0
        if code == SERVICE_CONTROL_RELOAD:
            self._handover(RestartRequest("SCM_RELOAD"))  # type: ignore[arg-type]
            return 0
        source = CONTROLS.get(code)
        if source is None:
            if code == w.SERVICE_CONTROL_INTERROGATE:
                return 0
            # Any SCM client may send any code from 128 to 255: say which one was ignored,
            # so that an operator's misdirected control is not a silent no-op. This is the
            # SCM's dispatcher thread, not a signal handler: the log's writes take a lock.
            _log.warning("service.control_ignored", code=code)
            return ERROR_CALL_NOT_IMPLEMENTED
        self.requested = True
        self._reporter.stop_pending()
        self._handover(StopRequest(source, "service control"))
        return 0
