"""A Windows worker's orders from its supervisor, as stop, restart and pause requests.

Windows has no signals between processes, and the worker has no console (it must not take
the console's events for itself: graceful/supervisor/windows_spawn.py). Its supervisor
writes one word a line on the worker's stdin (graceful/supervisor/orders.py):

    stop [SOURCE]   a stop (a second one forces, a third abandons, as repeated signals do)
    restart         stop: new workers serve already (a POSIX worker's SIGHUP)
    pause, continue the worker's pause (a POSIX worker's SIGUSR1, SIGUSR2)

The end of stdin means the supervisor has gone (killed: Task Manager, taskkill /F): the
worker stops as a POSIX worker does on the SIGTERM its PDEATHSIG sends, so nothing serves
on unsupervised. A thread reads the pipe and only hands requests over (`Handover`).
"""

from __future__ import annotations

import threading
from typing import BinaryIO

from graceful.bridge import Deliver, Handover
from graceful.bridge.controls import PauseAction, PauseRequest
from graceful.bridge.stop import RestartRequest, StopRequest, StopSource


class SupervisedBridge:
    def __init__(self, orders: BinaryIO) -> None:
        self._orders = orders
        self._handover = Handover()
        self._controls = Handover()
        self._thread: threading.Thread | None = None

    def capture(self) -> None:
        """Start reading: what comes before `install` is kept and delivered then."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._read, daemon=True,
                                             name="graceful-supervisor-orders")
            self._thread.start()

    def install(self, deliver: Deliver) -> None:
        self.capture()
        self._handover.connect(deliver)

    def install_controls(self, deliver: Deliver) -> None:
        self._controls.connect(deliver)

    def uninstall(self) -> None:
        self._handover.disconnect()  # later orders are kept, never delivered: ignored
        self._controls.disconnect()

    def _read(self) -> None:
        while True:
            try:
                line = self._orders.readline()
            except (OSError, ValueError):
                line = b""
            if not line:
                self._handover(StopRequest(StopSource.SIGTERM, "the supervisor has gone"))
                return
            word, _, source = line.decode(errors="replace").strip().partition(" ")
            if word == "restart":
                self._handover(RestartRequest("supervisor"))  # type: ignore[arg-type]
            elif word in ("pause", "continue"):
                action = PauseAction.PAUSE if word == "pause" else PauseAction.RESUME
                self._controls(PauseRequest(action, "supervisor"))  # type: ignore[arg-type]
            elif word == "stop":
                self._handover(StopRequest(_source(source), "told by the supervisor"))


def _source(name: str) -> StopSource:
    try:
        return StopSource(name)
    except ValueError:
        return StopSource.SIGTERM
