"""What a Runtime shows while it runs (read on the loop): its phase, app, state, listeners,
addresses, requests and connections, and the time left of its stop. The lifecycle that
changes them is runtime.py."""

from __future__ import annotations

import enum
import socket
from typing import TYPE_CHECKING, Any

from aiohttp import web

from graceful.errors import GracefulError
from graceful.http.listeners import Listener
from graceful.lifecycle.deadline import StopBudget

if TYPE_CHECKING:
    from graceful import checkpoint as ckpt
    from graceful.lifecycle.startup import Builder


class Phase(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    PAUSING = "pausing"  # graceful/lifecycle/pause.py
    PAUSED = "paused"
    DRAINING = "draining"
    STOPPED = "stopped"


class RuntimeView:
    """The read-only side of graceful.Runtime."""

    phase: Phase
    _builder: Builder
    _budget: StopBudget | None
    _metrics: Any  # metrics.endpoint.Metrics, or None (prometheus_client imported only then)

    @property
    def app(self) -> web.Application | None:
        return self._builder.app

    @property
    def state(self) -> dict[str, Any]:
        return self._builder.state

    @property
    def listeners(self) -> list[Listener]:
        return self._builder.listeners

    @property
    def checkpointer(self) -> ckpt.Checkpointer | None:
        return self._builder.checkpointer

    @property
    def metrics_socket(self) -> socket.socket | None:
        """The metrics listener while it serves (--metrics-bind): a restart hands it over."""
        return self._metrics.listening_socket if self._metrics is not None else None

    @property
    def addresses(self) -> list[tuple[str, int] | str]:
        return [listener.address for listener in self.listeners]

    @property
    def port(self) -> int:
        """The first TCP listener's port (the one `port=0` picked). Raises GracefulError
        before start() has bound, and when every listener is a Unix socket."""
        addresses = self.addresses
        if not addresses:
            raise GracefulError("Runtime.port: nothing is bound yet; the port is known once "
                                "start() has returned")
        port = next((a[1] for a in addresses if isinstance(a, tuple)), None)
        if port is None:
            raise GracefulError(f"Runtime.port: this runtime listens on no TCP port "
                                f"(addresses: {addresses})")
        return port

    @property
    def requests_in_flight(self) -> int:
        """Requests whose handler or response is not done (read on the loop)."""
        tracker = self._builder.tracker
        return len(tracker.requests_in_flight()) if tracker is not None else 0

    @property
    def open_connections(self) -> int:
        tracker = self._builder.tracker
        return len(tracker.connections) if tracker is not None else 0

    @property
    def stop_time_left(self) -> float:
        """Seconds left of the stop budget: 0 before a stop, and after a third one."""
        return self._budget.time_left if self._budget is not None else 0.0
