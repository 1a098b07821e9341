"""The real Win32 seam (Windows only): ctypes for the console, pywin32 for the SCM. The
interface, its data and its numbers are win32.py; tests run against tests/fake_win32.py."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from graceful.bridge.win32 import (
    SC_ACTION_RESTART,
    ConsoleHandler,
    ServiceConfig,
    ServiceSpec,
    ServiceStatus,
    Win32Error,
)


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
                spec.command_line, None, 0, list(spec.dependencies) or None, spec.account,
                spec.password)
            try:
                if spec.environment:  # the SCM's per-service environment (as nssm sets it)
                    _set_environment(spec.name, spec.environment)
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

    def query_service_environment(self, name: str) -> tuple[tuple[str, str], ...]:
        import winreg

        path = f"SYSTEM\\CurrentControlSet\\Services\\{name}"
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path) as key:
                values, _ = winreg.QueryValueEx(key, "Environment")
        except OSError:
            return ()
        return tuple((k, v) for k, _, v in (pair.partition("=") for pair in values) if k)

    def query_service_config(self, name: str) -> ServiceConfig:
        import win32service as ws

        with _errors(), _service(name) as handle:
            config = ws.QueryServiceConfig(handle)
            description = _config2(handle, ws.SERVICE_CONFIG_DESCRIPTION, "") or ""
            delayed = _config2(handle, ws.SERVICE_CONFIG_DELAYED_AUTO_START_INFO, False)
            failure = _config2(handle, ws.SERVICE_CONFIG_FAILURE_ACTIONS, None)
        actions = None if failure is None else tuple(
            tuple(a) for a in failure.get("Actions") or ())
        return ServiceConfig(config[1], bool(delayed), config[7] or "LocalSystem",
                             tuple(config[6] or ()), description, actions,
                             int((failure or {}).get("ResetPeriod") or 0))

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


def _config2(handle: Any, level: int, default: Any) -> Any:
    """QueryServiceConfig2, or `default` where the SCM does not know `level` (Wine knows
    few: ERROR_INVALID_LEVEL)."""
    import pywintypes
    import win32service as ws

    try:
        return ws.QueryServiceConfig2(handle, level)
    except pywintypes.error as err:
        if err.winerror != 124:
            raise
        return default


def _set_environment(name: str, environment: tuple[tuple[str, str], ...]) -> None:
    import winreg

    path = f"SYSTEM\\CurrentControlSet\\Services\\{name}"
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path, 0, winreg.KEY_SET_VALUE) as key:
            winreg.SetValueEx(key, "Environment", 0, winreg.REG_MULTI_SZ,
                              [f"{k}={v}" for k, v in environment])
    except OSError as err:
        raise Win32Error("RegSetValueEx", getattr(err, "winerror", 0) or 0,
                         err.strerror or str(err)) from None


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
