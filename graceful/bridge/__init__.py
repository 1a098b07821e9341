"""Stop sources. Each turns its platform's stop events into `StopRequest`s; nothing else in
the runtime knows the platform.

A bridge is installed with a `deliver` callable that is safe to call from any thread and
from a signal handler: it only hands the request to the loop with `call_soon_threadsafe`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol

from graceful.stop import StopRequest

Deliver = Callable[[StopRequest], None]


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
