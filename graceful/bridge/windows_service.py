"""The Windows service's stop source: SCM controls become stop requests.

The process the SCM starts, and how it reports to the SCM, are in graceful/windows/.
"""

from __future__ import annotations

from typing import Protocol

from graceful.bridge import Deliver, Handover
from graceful.bridge import win32 as w
from graceful.stop import StopRequest, StopSource

CONTROLS = {w.SERVICE_CONTROL_STOP: StopSource.SCM_STOP,
            w.SERVICE_CONTROL_SHUTDOWN: StopSource.SCM_SHUTDOWN,
            w.SERVICE_CONTROL_PRESHUTDOWN: StopSource.SCM_PRESHUTDOWN}


class _Reporter(Protocol):
    def stop_pending(self) -> None: ...


class ServiceBridge:
    """The StopBridge of a service: SCM controls become stop requests. A control that comes
    before the loop runs is kept and delivered at install."""

    def __init__(self, reporter: _Reporter) -> None:
        self._reporter = reporter
        self._handover = Handover()
        self.requested = False

    def install(self, deliver: Deliver) -> None:
        self._handover.connect(deliver)

    def uninstall(self) -> None:
        self._handover.disconnect()

    def control(self, code: int) -> int:
        """The SCM's handler (its thread): answer at once, the stop runs on the loop."""
        source = CONTROLS.get(code)
        if source is None:
            return 0 if code == w.SERVICE_CONTROL_INTERROGATE else 120  # NOT_IMPLEMENTED
        self.requested = True
        self._reporter.stop_pending()
        self._handover(StopRequest(source, "service control"))
        return 0
