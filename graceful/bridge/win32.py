"""The Win32 seam: every console and Service Control Manager call graceful makes, behind
one small interface, so that the bridge and service logic run on Linux against the tests'
FakeWin32 (tests/fake_win32.py) and on Windows against `RealWin32` (win32_real.py: ctypes
for the console, pywin32 for the SCM).

Numbers are the Win32 ones, spelled here so that importing this module needs no pywin32.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Callable
from typing import Any, Protocol

from graceful.errors import GracefulError

# Console control events (wincon.h).
CTRL_C_EVENT, CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT = 0, 1, 2
CTRL_LOGOFF_EVENT, CTRL_SHUTDOWN_EVENT = 5, 6
# Service states, controls, accepted-control bits (winsvc.h).
SERVICE_STOPPED, SERVICE_START_PENDING, SERVICE_STOP_PENDING, SERVICE_RUNNING = 1, 2, 3, 4
SERVICE_CONTROL_STOP, SERVICE_CONTROL_INTERROGATE, SERVICE_CONTROL_SHUTDOWN = 1, 4, 5
SERVICE_CONTROL_PRESHUTDOWN = 0x0F
SERVICE_ACCEPT_STOP, SERVICE_ACCEPT_SHUTDOWN, SERVICE_ACCEPT_PRESHUTDOWN = 0x1, 0x4, 0x100
SERVICE_CONTINUE_PENDING, SERVICE_PAUSE_PENDING, SERVICE_PAUSED = 5, 6, 7
SERVICE_CONTROL_PAUSE, SERVICE_CONTROL_CONTINUE = 2, 3
SERVICE_ACCEPT_PAUSE_CONTINUE = 0x2
SERVICE_AUTO_START, SERVICE_DEMAND_START = 2, 3
SC_ACTION_NONE, SC_ACTION_RESTART = 0, 1
ERROR_SERVICE_SPECIFIC_ERROR = 1066
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_EXISTS = 1073
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_PROCESS_ABORTED = 1067  # the SCM's code for a service that ended without STOPPED
ERROR_SHARING_VIOLATION = 32

STATE_NAMES = {SERVICE_STOPPED: "STOPPED", SERVICE_START_PENDING: "START_PENDING",
               SERVICE_STOP_PENDING: "STOP_PENDING", SERVICE_RUNNING: "RUNNING",
               SERVICE_CONTINUE_PENDING: "CONTINUE_PENDING",
               SERVICE_PAUSE_PENDING: "PAUSE_PENDING", SERVICE_PAUSED: "PAUSED"}

ConsoleHandler = Callable[[int], bool]
SignalHandler = Callable[[int, Any], None]


@dataclasses.dataclass(frozen=True)
class ServiceStatus:
    """One SERVICE_STATUS report (the fields graceful sets), plus the pid when queried."""

    state: int
    controls_accepted: int = 0
    win32_exit_code: int = 0
    service_exit_code: int = 0
    checkpoint: int = 0
    wait_hint_ms: int = 0
    pid: int = 0

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, str(self.state))


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """What `graceful service install` asks the SCM for."""

    name: str
    display_name: str
    description: str
    argv: tuple[str, ...]
    start_type: int = SERVICE_DEMAND_START
    delayed_start: bool = False
    # Recovery (nssm-like): restart after this many seconds on failure; None: no action.
    restart_delay_s: float | None = None
    restart_reset_s: int = 86400
    preshutdown_timeout_ms: int = 0
    # What nssm's install sets, so that moving from nssm loses nothing: the account (None:
    # LocalSystem), its password (a user account's), the services it needs started first,
    # its own environment variables.
    account: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    dependencies: tuple[str, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()

    @property
    def command_line(self) -> str:
        return subprocess.list2cmdline(self.argv)


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """What `graceful service status` reads back of an installed service."""

    start_type: int
    delayed_start: bool
    account: str  # "LocalSystem" for the SCM's default
    dependencies: tuple[str, ...]
    description: str
    # (action, delay in ms) per failure, and the seconds after which the count resets;
    # None: this SCM cannot say (Wine)
    failure_actions: tuple[tuple[int, int], ...] | None
    failure_reset_s: int


class Win32Error(GracefulError):
    """A Win32 call failed; the message carries the system's own text and number."""

    def __init__(self, function: str, winerror: int, text: str) -> None:
        super().__init__(f"{function}: {text.strip().rstrip('.')} (Win32 error {winerror})")
        self.function, self.winerror = function, winerror


class Win32(Protocol):
    def monotonic(self) -> float: ...
    def set_signal_handler(self, name: str, handler: Any) -> Any:
        """`signal.signal(signal.<name>, handler)`; returns the previous handler."""
    def set_console_handler(self, handler: ConsoleHandler, add: bool) -> None:
        """SetConsoleCtrlHandler(handler, add)."""
    def set_service_status(self, handle: Any, status: ServiceStatus) -> None: ...
    def create_service(self, spec: ServiceSpec) -> None: ...
    def delete_service(self, name: str) -> None: ...
    def start_service(self, name: str) -> None: ...
    def control_service(self, name: str, control: int) -> ServiceStatus: ...
    def query_service(self, name: str) -> ServiceStatus: ...
    def query_service_command(self, name: str) -> list[str]:
        """The service's command line (QueryServiceConfig), split as Windows splits it."""
    def query_service_config(self, name: str) -> ServiceConfig:
        """Start type, account, dependencies, description, recovery actions."""
    def query_service_environment(self, name: str) -> tuple[tuple[str, str], ...]:
        """The service's own environment variables (its registry `Environment` value)."""
    def report_event(self, kind: str, message: str) -> None:
        """A line in the Windows Event Log (Application): kind is error, warning or info."""
    def replace_file(self, src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        """os.replace (MoveFileEx): fails with a sharing violation on Windows when another
        process holds `src` open without FILE_SHARE_DELETE."""


def real() -> Win32:
    """The real seam (Windows only): graceful/bridge/win32_real.py."""
    from graceful.bridge.win32_real import RealWin32

    return RealWin32()
