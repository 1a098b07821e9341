"""The Win32 seam: every console and Service Control Manager call graceful makes, behind
one small interface, so that the bridge and service logic run on Linux against the tests'
FakeWin32 (tests/fake_win32.py) and on Windows against `RealWin32` (ctypes for the
console, pywin32 for the SCM).

Numbers are the Win32 ones, spelled here so that importing this module needs no pywin32.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
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
               SERVICE_STOP_PENDING: "STOP_PENDING", SERVICE_RUNNING: "RUNNING"}

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

    @property
    def command_line(self) -> str:
        return subprocess.list2cmdline(self.argv)


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
    def report_event(self, kind: str, message: str) -> None:
        """A line in the Windows Event Log (Application): kind is error, warning or info."""
    def replace_file(self, src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        """os.replace (MoveFileEx): fails with a sharing violation on Windows when another
        process holds `src` open without FILE_SHARE_DELETE."""


class RealWin32:
    """ctypes' kernel32 for the console, pywin32's win32service for the SCM (Windows only)."""

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        self._kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
        self._routine = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)  # type: ignore[attr-defined]
        self._ctypes = ctypes
        # The ctypes callbacks must outlive their registration: a handler may still be
        # running on the console's thread after it is removed.
        self._callbacks: dict[ConsoleHandler, Any] = {}

    def monotonic(self) -> float:
        return time.monotonic()

    def set_signal_handler(self, name: str, handler: Any) -> Any:
        return signal.signal(getattr(signal, name), handler)

    def set_console_handler(self, handler: ConsoleHandler, add: bool) -> None:
        callback = self._callbacks.get(handler)
        if callback is None:
            callback = self._callbacks[handler] = self._routine(lambda event: bool(handler(event)))
        if not self._kernel32.SetConsoleCtrlHandler(callback, add):
            error = self._ctypes.get_last_error()  # type: ignore[attr-defined]
            raise Win32Error("SetConsoleCtrlHandler", error,
                             self._ctypes.FormatError(error))  # type: ignore[attr-defined]

    def set_service_status(self, handle: Any, status: ServiceStatus) -> None:
        import win32service

        with _errors():
            win32service.SetServiceStatus(handle, (
                win32service.SERVICE_WIN32_OWN_PROCESS, status.state, status.controls_accepted,
                status.win32_exit_code, status.service_exit_code, status.checkpoint,
                status.wait_hint_ms))

    def create_service(self, spec: ServiceSpec) -> None:
        import win32service as ws

        with _errors(), _scm() as scm:
            handle = ws.CreateService(
                scm, spec.name, spec.display_name, ws.SERVICE_ALL_ACCESS,
                ws.SERVICE_WIN32_OWN_PROCESS, spec.start_type, ws.SERVICE_ERROR_NORMAL,
                spec.command_line, None, 0, None, None, None)
            try:
                ws.ChangeServiceConfig2(handle, ws.SERVICE_CONFIG_DESCRIPTION, spec.description)
                if spec.delayed_start:
                    ws.ChangeServiceConfig2(handle, ws.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, True)
                if spec.preshutdown_timeout_ms:
                    ws.ChangeServiceConfig2(handle, ws.SERVICE_CONFIG_PRESHUTDOWN_INFO,
                                            spec.preshutdown_timeout_ms)
                if spec.restart_delay_s is not None:
                    delay = int(spec.restart_delay_s * 1000)
                    ws.ChangeServiceConfig2(handle, ws.SERVICE_CONFIG_FAILURE_ACTIONS, {
                        "ResetPeriod": spec.restart_reset_s, "RebootMsg": "", "Command": "",
                        "Actions": [(SC_ACTION_RESTART, delay)] * 3})
            finally:
                ws.CloseServiceHandle(handle)

    def delete_service(self, name: str) -> None:
        import win32service as ws

        with _errors(), _service(name) as handle:
            ws.DeleteService(handle)

    def start_service(self, name: str) -> None:
        import win32service as ws

        with _errors(), _service(name) as handle:
            ws.StartService(handle, None)

    def control_service(self, name: str, control: int) -> ServiceStatus:
        import win32service as ws

        with _errors(), _service(name) as handle:
            return _status(ws.ControlService(handle, control))

    def query_service(self, name: str) -> ServiceStatus:
        import win32service as ws

        with _errors(), _service(name) as handle:
            info = ws.QueryServiceStatusEx(handle)
        return ServiceStatus(info["CurrentState"], info["ControlsAccepted"],
                             info["Win32ExitCode"], info["ServiceSpecificExitCode"],
                             info["CheckPoint"], info["WaitHint"], info["ProcessId"])

    def query_service_command(self, name: str) -> list[str]:
        from ctypes import wintypes

        import win32service as ws

        with _errors(), _service(name) as handle:
            command = ws.QueryServiceConfig(handle)[3]
        shell32 = self._ctypes.WinDLL("shell32")  # type: ignore[attr-defined]
        shell32.CommandLineToArgvW.restype = self._ctypes.POINTER(wintypes.LPWSTR)
        count = self._ctypes.c_int()
        argv = shell32.CommandLineToArgvW(command, self._ctypes.byref(count))
        try:
            return [argv[i] for i in range(count.value)]
        finally:
            self._kernel32.LocalFree(argv)

    def report_event(self, kind: str, message: str) -> None:
        import servicemanager

        log = {"error": servicemanager.LogErrorMsg, "warning": servicemanager.LogWarningMsg,
               "info": servicemanager.LogInfoMsg}[kind]
        log(message)

    def replace_file(self, src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        os.replace(src, dst)


def _status(raw: tuple[int, ...]) -> ServiceStatus:
    _type, state, accepted, win32_exit, svc_exit, checkpoint, hint = raw
    return ServiceStatus(state, accepted, win32_exit, svc_exit, checkpoint, hint)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    import pywintypes

    try:
        yield
    except pywintypes.error as err:
        raise Win32Error(err.funcname or "Win32", err.winerror, err.strerror) from None


@contextlib.contextmanager
def _scm() -> Iterator[Any]:
    import win32service as ws

    scm = ws.OpenSCManager(None, None, ws.SC_MANAGER_ALL_ACCESS)
    try:
        yield scm
    finally:
        ws.CloseServiceHandle(scm)


@contextlib.contextmanager
def _service(name: str) -> Iterator[Any]:
    import win32service as ws

    with _scm() as scm:
        handle = ws.OpenService(scm, name, ws.SERVICE_ALL_ACCESS)
        try:
            yield handle
        finally:
            ws.CloseServiceHandle(handle)


def real() -> Win32:
    """The real seam (Windows only)."""
    return RealWin32()
