"""Runs under Windows python (Wine) in a console: starts `graceful serve` as a child in the
same console, relays its JSON log to WORK/log.jsonl, waits for WORK/go (the Linux test),
then sends a console event, and writes the child's exit code to WORK/exit.

    driver.py WORK ctrl-c -- <serve arguments>   GenerateConsoleCtrlEvent(CTRL_C_EVENT, 0)
    driver.py WORK close  -- <serve arguments>   CTRL_CLOSE_EVENT, delivered as Windows does:
        a thread made in the child at kernelbase!CtrlRoutine, which calls its handlers.

Bounded everywhere; the child is ended by its pid if it overruns.
"""

from __future__ import annotations

import ctypes
import json
import signal
import subprocess
import sys
import threading
import time
from ctypes import wintypes
from pathlib import Path

work, mode = Path(sys.argv[1]), sys.argv[2]
serve = sys.argv[sys.argv.index("--") + 1:]
k32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
# The console event reaches this driver too: ignore it here.
signal.signal(signal.SIGINT, lambda *args: None)

child = subprocess.Popen([sys.executable, "-m", "graceful", "serve", *serve],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def relay() -> None:
    assert child.stderr is not None
    for line in child.stderr:
        with open(work / "log.jsonl", "a", encoding="utf-8") as log:
            log.write(line)


threading.Thread(target=relay, daemon=True).start()
deadline = time.monotonic() + 60
while not (work / "go").exists() and time.monotonic() < deadline and child.poll() is None:
    time.sleep(0.05)
report: dict[str, object] = {"mode": mode}
started = time.monotonic()
if mode == "ctrl-c":
    report["sent"] = k32.GenerateConsoleCtrlEvent(0, 0)
elif mode == "close":
    k32.GetModuleHandleW.restype = wintypes.HMODULE
    k32.GetProcAddress.restype = ctypes.c_void_p
    k32.GetProcAddress.argtypes = [wintypes.HMODULE, ctypes.c_char_p]
    k32.OpenProcess.restype = wintypes.HANDLE
    k32.CreateRemoteThread.restype = wintypes.HANDLE
    k32.CreateRemoteThread.argtypes = [wintypes.HANDLE, ctypes.c_void_p, ctypes.c_size_t,
                                       ctypes.c_void_p, ctypes.c_void_p, wintypes.DWORD,
                                       ctypes.c_void_p]
    routine = k32.GetProcAddress(k32.GetModuleHandleW("kernelbase"), b"CtrlRoutine")
    process = k32.OpenProcess(0x1F0FFF, False, child.pid)
    thread = k32.CreateRemoteThread(process, None, 0, ctypes.c_void_p(routine),
                                    ctypes.c_void_p(2), 0, None)  # CTRL_CLOSE_EVENT
    report["sent"] = bool(thread)
    k32.WaitForSingleObject(wintypes.HANDLE(thread), 30_000)
    code = wintypes.DWORD()
    k32.GetExitCodeThread(wintypes.HANDLE(thread), ctypes.byref(code))
    report["handler_returned"] = code.value  # CtrlRoutine's result: 1 = handled
    report["handler_blocked_s"] = round(time.monotonic() - started, 3)
report["error"] = ctypes.get_last_error()  # type: ignore[attr-defined]
try:
    exit_code: object = child.wait(60)
except subprocess.TimeoutExpired:
    child.kill()
    exit_code = "timeout"
report["exit"] = exit_code
report["stop_took_s"] = round(time.monotonic() - started, 3)
time.sleep(0.3)  # the relay thread drains the last lines
(work / "result.json").write_text(json.dumps(report))
