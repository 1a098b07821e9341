"""The platform-neutral parts of Windows workers, on Linux: a worker's orders read from its
stdin (graceful/bridge/supervised.py), the SCM's reload control (129), and the loop a worker
with shared sockets gets.

1. Each order word becomes its request, in order; the end of stdin is a stop (the
   supervisor has gone).
2. Control 129 becomes a restart request, answered NO_ERROR, and counts as no stop; another
   user control (200) is answered ERROR_CALL_NOT_IMPLEMENTED, logged, and asks for nothing.
3. Only a Windows worker's asyncio loop is the selector one (capped below select()'s 512
   sockets), and `--loop auto` gives it that one rather than winloop.
"""

from __future__ import annotations

import asyncio
import io
import sys
import threading

from structlog.testing import capture_logs

from graceful.bridge.controls import PauseAction, PauseRequest
from graceful.bridge.stop import RestartRequest, StopRequest, StopSource
from graceful.bridge.supervised import SupervisedBridge
from graceful.bridge.windows_service import SERVICE_CONTROL_RELOAD, ServiceBridge
from graceful.host.capped_selector import CappedSelectorEventLoop
from graceful.host.loops import loop_factory


def test_1_orders_from_stdin():
    received: list[object] = []
    done = threading.Event()

    def deliver(request: object) -> None:
        received.append(request)
        if isinstance(request, StopRequest) and request.reason == "the supervisor has gone":
            done.set()

    orders = io.BytesIO(b"pause\ncontinue\nrestart\nstop CTRL_C\nstop NOT_A_SOURCE\n")
    bridge = SupervisedBridge(orders)
    bridge.install_controls(deliver)
    bridge.install(deliver)
    assert done.wait(5)
    pause, resume, restart, stop, other, gone = received
    assert isinstance(pause, PauseRequest) and pause.action is PauseAction.PAUSE
    assert isinstance(resume, PauseRequest) and resume.action is PauseAction.RESUME
    assert isinstance(restart, RestartRequest)
    assert isinstance(stop, StopRequest) and stop.source is StopSource.CTRL_C
    assert isinstance(other, StopRequest) and other.source is StopSource.SIGTERM
    assert isinstance(gone, StopRequest)


def test_2_reload_control():
    class Reporter:
        stops = 0

        def stop_pending(self) -> None:
            self.stops += 1

        def pause_pending(self, action: PauseAction) -> bool:
            return True

    received: list[object] = []
    reporter = Reporter()
    bridge = ServiceBridge(reporter)
    bridge.install(received.append)
    assert bridge.control(SERVICE_CONTROL_RELOAD) == 0
    [request] = received
    assert isinstance(request, RestartRequest) and request.source == "SCM_RELOAD"
    assert not bridge.requested and reporter.stops == 0
    with capture_logs() as logged:
        assert bridge.control(200) == 120
    assert [(e["event"], e["code"]) for e in logged] == [("service.control_ignored", 200)]
    assert received == [request] and not bridge.requested and reporter.stops == 0


def test_3_loop_of_a_worker_with_shared_sockets(monkeypatch):
    assert loop_factory("asyncio", shared_sockets=True)[1] is asyncio.new_event_loop
    monkeypatch.setattr(sys, "platform", "win32")
    assert loop_factory("asyncio", shared_sockets=True)[1] is CappedSelectorEventLoop
    assert loop_factory("auto", shared_sockets=True) == ("asyncio", CappedSelectorEventLoop)
    assert loop_factory("asyncio")[1] is asyncio.new_event_loop
