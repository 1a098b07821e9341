"""The Windows service host in a process of its own, as pywin32 runs it, on Linux: SvcRun's
body (`run_and_exit`) on a thread of its own, controls from the main thread (which then
blocks, as in StartServiceCtrlDispatcher), the Win32 calls faked. Each SERVICE_STATUS report
is printed as a JSON line. A line on stdin sends SERVICE_CONTROL_STOP.

    python -m tests.service_child NAME --log-file F -- TARGET [serve options]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from typing import Any

from graceful.bridge import win32 as w
from graceful.windows.service_host import ServiceHost, run_and_exit
from tests.fake_win32 import FakeWin32


class PrintingWin32(FakeWin32):
    def set_service_status(self, handle: Any, status: w.ServiceStatus) -> None:
        super().set_service_status(handle, status)
        print(json.dumps(dataclasses.asdict(status)), flush=True)


def main() -> None:
    host = ServiceHost(sys.argv[1:], PrintingWin32(), handle="ssh")
    threading.Thread(target=run_and_exit, args=(host,), name="SvcRun").start()
    sys.stdin.readline()
    host.bridge.control(w.SERVICE_CONTROL_STOP)
    threading.Event().wait()  # the dispatcher's thread: only os._exit ends the process


if __name__ == "__main__":
    main()
