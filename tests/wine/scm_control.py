"""Runs under Windows python: sends SCM control CODE to service NAME as any other SCM client
would (advapi32 through ctypes: OpenSCManagerW, OpenServiceW with the user-defined-control
right, ControlService), not through graceful nor pywin32. Prints one JSON line: the
service's process id before the control (QueryServiceStatusEx), and the call's Win32 error
(0 for success) with the state ControlService reported.

    scm_control.py NAME CODE
"""

from __future__ import annotations

import ctypes
import json
import sys
from ctypes import wintypes

SC_MANAGER_CONNECT = 0x0001
SERVICE_QUERY_STATUS = 0x0004
SERVICE_USER_DEFINED_CONTROL = 0x0100
SC_STATUS_PROCESS_INFO = 0


class ServiceStatusProcess(ctypes.Structure):
    _fields_ = [(name, wintypes.DWORD) for name in (
        "type", "state", "controls_accepted", "win32_exit_code", "service_exit_code",
        "checkpoint", "wait_hint", "process_id", "flags")]


advapi = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined]
advapi.OpenSCManagerW.restype = wintypes.HANDLE
advapi.OpenSCManagerW.argtypes = [wintypes.LPCWSTR, wintypes.LPCWSTR, wintypes.DWORD]
advapi.OpenServiceW.restype = wintypes.HANDLE
advapi.OpenServiceW.argtypes = [wintypes.HANDLE, wintypes.LPCWSTR, wintypes.DWORD]
advapi.ControlService.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.c_void_p]
advapi.QueryServiceStatusEx.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p,
                                        wintypes.DWORD, ctypes.POINTER(wintypes.DWORD)]
advapi.CloseServiceHandle.argtypes = [wintypes.HANDLE]


def main(name: str, code: int) -> dict[str, int]:
    scm = advapi.OpenSCManagerW(None, None, SC_MANAGER_CONNECT)
    if not scm:
        return {"error": ctypes.get_last_error(), "step": "OpenSCManagerW"}  # type: ignore[attr-defined]
    service = advapi.OpenServiceW(scm, name, SERVICE_QUERY_STATUS | SERVICE_USER_DEFINED_CONTROL)
    if not service:
        return {"error": ctypes.get_last_error(), "step": "OpenServiceW"}  # type: ignore[attr-defined]
    status, needed = ServiceStatusProcess(), wintypes.DWORD()
    advapi.QueryServiceStatusEx(service, SC_STATUS_PROCESS_INFO, ctypes.byref(status),
                                ctypes.sizeof(status), ctypes.byref(needed))
    pid = status.process_id
    # ControlService fills a SERVICE_STATUS: the first 7 fields of SERVICE_STATUS_PROCESS
    ok = advapi.ControlService(service, code, ctypes.byref(status))
    error = 0 if ok else ctypes.get_last_error()  # type: ignore[attr-defined]
    advapi.CloseServiceHandle(service)
    advapi.CloseServiceHandle(scm)
    return {"pid": pid, "error": error, "state": status.state}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
