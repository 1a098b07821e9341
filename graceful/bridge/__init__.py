"""Stop sources. Each turns its platform's stop events into `StopRequest`s; nothing else in
the runtime knows the platform.

A bridge is installed with a `deliver` callable that is safe to call from any thread and
from a signal handler: it only hands the request to the loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Protocol

from graceful.bridge.stop import StopRequest

Deliver = Callable[[StopRequest], None]


class Handover:
    """Hands stop requests to `deliver` once a bridge is installed; keeps those that come
    before (a signal during imports, before the loop exists) and delivers them, in order,
    at install. Safe from a signal handler and from other threads."""

    def __init__(self) -> None:
        # Reentrant: a signal handler runs on the main thread, maybe inside connect().
        self._lock = threading.RLock()
        self._deliver: Deliver | None = None
        self._pending: list[StopRequest] = []

    def connect(self, deliver: Deliver) -> None:
        with self._lock:
            self._deliver = deliver
            pending, self._pending = self._pending, []
        for request in pending:
            deliver(request)

    def disconnect(self) -> None:
        with self._lock:
            self._deliver = None

    def __call__(self, request: StopRequest) -> None:
        with self._lock:
            deliver = self._deliver
            if deliver is None:
                self._pending.append(request)
                return
        deliver(request)


class StopBridge(Protocol):
    def install(self, deliver: Deliver) -> None:
        """Start turning platform events into calls of `deliver`."""

    def uninstall(self) -> None:
        """Restore whatever was there before `install`."""


def default_bridge() -> StopBridge:
    """The bridge for a console process on this platform."""
    if sys.platform == "win32":
        from graceful.bridge.windows_console import WindowsConsoleBridge

        return WindowsConsoleBridge()
    from graceful.bridge.posix import PosixSignalBridge

    return PosixSignalBridge()
