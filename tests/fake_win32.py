"""The fake side of the Win32 seam (graceful/bridge/win32.py): an in-memory SCM and console,
for the bridge and service tests on Linux."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from graceful.bridge.win32 import (
    ERROR_SERVICE_ALREADY_RUNNING,
    ERROR_SERVICE_DOES_NOT_EXIST,
    ERROR_SERVICE_EXISTS,
    ERROR_SERVICE_NOT_ACTIVE,
    ERROR_SHARING_VIOLATION,
    SC_ACTION_RESTART,
    SERVICE_ACCEPT_PAUSE_CONTINUE,
    SERVICE_ACCEPT_STOP,
    SERVICE_CONTINUE_PENDING,
    SERVICE_CONTROL_CONTINUE,
    SERVICE_CONTROL_PAUSE,
    SERVICE_PAUSE_PENDING,
    SERVICE_PAUSED,
    SERVICE_RUNNING,
    SERVICE_STOP_PENDING,
    SERVICE_STOPPED,
    ConsoleHandler,
    ServiceConfig,
    ServiceSpec,
    ServiceStatus,
    Win32Error,
)


class FakeWin32:
    """Records every call; an in-memory SCM. Tests fire console events and signals."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.signals: dict[str, Any] = {"SIGINT": signal.default_int_handler,
                                        "SIGBREAK": signal.SIG_DFL}
        self.console_handlers: list[ConsoleHandler] = []
        self.statuses: list[ServiceStatus] = []
        self.services: dict[str, ServiceSpec] = {}
        self.service_states: dict[str, ServiceStatus] = {}
        self.clock = 0.0
        self.lock = threading.Lock()
        self.events: list[tuple[str, str]] = []
        # Paths another process holds open (a log viewer): renaming them fails, as on Windows.
        self.open_elsewhere: set[str] = set()
        # What a stop control ends with, per service (default: STOPPED, exit 0).
        self.stop_results: dict[str, ServiceStatus] = {}
        self.marked_for_deletion: set[str] = set()

    def monotonic(self) -> float:
        return self.clock

    def set_signal_handler(self, name: str, handler: Any) -> Any:
        self.calls.append(("signal", name))
        previous, self.signals[name] = self.signals[name], handler
        return previous

    def raise_signal(self, name: str) -> None:
        self.signals[name]({"SIGINT": 2, "SIGBREAK": 21}[name], None)

    def set_console_handler(self, handler: ConsoleHandler, add: bool) -> None:
        self.calls.append(("console_handler", add))
        if add:
            self.console_handlers.append(handler)
        else:
            self.console_handlers.remove(handler)

    def console_event(self, event: int) -> bool:
        """What Windows does: call the handlers, newest first, until one returns True."""
        return any(handler(event) for handler in reversed(list(self.console_handlers)))

    def set_service_status(self, handle: Any, status: ServiceStatus) -> None:
        with self.lock:
            self.statuses.append(status)

    def create_service(self, spec: ServiceSpec) -> None:
        self.calls.append(("create_service", spec))
        if spec.name in self.services:
            raise Win32Error("CreateService", ERROR_SERVICE_EXISTS,
                             "The specified service already exists.")
        self.services[spec.name] = spec
        self.service_states[spec.name] = ServiceStatus(SERVICE_STOPPED)

    def _status(self, function: str, name: str) -> ServiceStatus:
        if name not in self.services:
            raise Win32Error(function, ERROR_SERVICE_DOES_NOT_EXIST,
                             "The specified service does not exist as an installed service.")
        return self.service_states[name]

    def delete_service(self, name: str) -> None:
        if self._status("OpenService", name).state != SERVICE_STOPPED:
            self.marked_for_deletion.add(name)  # Windows deletes it once it has stopped
        del self.services[name], self.service_states[name]

    def start_service(self, name: str) -> None:
        if self._status("OpenService", name).state != SERVICE_STOPPED:
            raise Win32Error("StartService", ERROR_SERVICE_ALREADY_RUNNING,
                             "An instance of the service is already running.")
        self.service_states[name] = ServiceStatus(SERVICE_RUNNING, SERVICE_ACCEPT_STOP, pid=42)

    def control_service(self, name: str, control: int) -> ServiceStatus:
        state = self._status("OpenService", name).state
        if state not in (SERVICE_RUNNING, SERVICE_PAUSED, SERVICE_PAUSE_PENDING):
            raise Win32Error("ControlService", ERROR_SERVICE_NOT_ACTIVE,
                             "The service has not been started.")
        pid, accepted = 42, SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_PAUSE_CONTINUE
        if control == SERVICE_CONTROL_PAUSE:  # the service pauses at once
            self.service_states[name] = ServiceStatus(SERVICE_PAUSED, accepted, pid=pid)
            return ServiceStatus(SERVICE_PAUSE_PENDING, accepted, checkpoint=1,
                                 wait_hint_ms=1000, pid=pid)
        if control == SERVICE_CONTROL_CONTINUE:
            self.service_states[name] = ServiceStatus(SERVICE_RUNNING, accepted, pid=pid)
            return ServiceStatus(SERVICE_CONTINUE_PENDING, accepted, checkpoint=1,
                                 wait_hint_ms=1000, pid=pid)
        self.service_states[name] = self.stop_results.get(name, ServiceStatus(SERVICE_STOPPED))
        return ServiceStatus(SERVICE_STOP_PENDING, checkpoint=1, wait_hint_ms=1000)

    def query_service(self, name: str) -> ServiceStatus:
        return self._status("OpenService", name)

    def query_service_command(self, name: str) -> list[str]:
        self._status("OpenService", name)
        return list(self.services[name].argv)

    def query_service_environment(self, name: str) -> tuple[tuple[str, str], ...]:
        spec = self.services.get(name)
        return spec.environment if spec else ()

    def query_service_config(self, name: str) -> ServiceConfig:
        self._status("OpenService", name)
        spec = self.services[name]
        actions = (((SC_ACTION_RESTART, int(spec.restart_delay_s * 1000)),) * 3
                   if spec.restart_delay_s is not None else ())
        return ServiceConfig(spec.start_type, spec.delayed_start,
                             spec.account or "LocalSystem", spec.dependencies,
                             spec.description, actions, spec.restart_reset_s)

    def report_event(self, kind: str, message: str) -> None:
        self.events.append((kind, message))

    def replace_file(self, src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        if {os.fspath(src), os.fspath(dst)} & self.open_elsewhere:
            err = PermissionError(13, "The process cannot access the file because it is "
                                      "being used by another process", os.fspath(src))
            err.winerror = ERROR_SHARING_VIOLATION  # type: ignore[attr-defined]
            raise err
        os.replace(src, dst)
