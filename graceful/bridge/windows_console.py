"""Windows console events as stop requests.

CTRL_C and CTRL_BREAK come through `signal.signal` (SIGINT, SIGBREAK), like POSIX signals.
Not `loop.add_signal_handler`: the Proactor loop raises NotImplementedError for it, and
winloop's installs a SIGINT handler whatever signal it is given, so a CTRL_BREAK would
still kill the process. Python runs the handler on the main thread; the loop sleeping in
IOCP (Proactor) or in libuv (winloop) wakes because both set `signal.set_wakeup_fd` to
their self-pipe when they run on the main thread, and `deliver` itself is a
`call_soon_threadsafe`, which writes to that self-pipe too.

CTRL_CLOSE, CTRL_LOGOFF and CTRL_SHUTDOWN need more: the C runtime maps them to SIGBREAK and
returns as soon as Python has noted the signal, and Windows ends the process when the
console handler returns. So a handler of our own (`SetConsoleCtrlHandler`, registered after
the C runtime's, so called first) delivers the stop and *waits* for it, on the console's
thread, within what Windows allows (`OS_LIMITS_S`). When the time runs short it asks for the
fast stop (a second request: in-flight requests are cancelled, hooks and checkpoint still
run, bounded), and returns just before Windows would end the process anyway. Go's runtime
does the same (os_windows.go, ctrlHandler).

A second event of any kind is a second stop request: force, as on POSIX.
"""

from __future__ import annotations

import threading
from types import FrameType

from graceful.bridge import Deliver, Handover
from graceful.bridge import win32 as w
from graceful.bridge.stop import StopRequest, StopSource

# Seconds Windows lets a console handler run before it ends the process: HandlerRoutine's
# documentation gives 5 s for CTRL_CLOSE and 20 s for CTRL_LOGOFF and CTRL_SHUTDOWN (the
# latter also capped by WaitToKillAppTimeout, and only delivered to a console process
# that has not loaded user32.dll: a service gets SCM controls instead).
OS_LIMITS_S = {w.CTRL_CLOSE_EVENT: 5.0, w.CTRL_LOGOFF_EVENT: 20.0, w.CTRL_SHUTDOWN_EVENT: 20.0}
# Return this long before the OS limit: it kills without a word, we would rather exit.
MARGIN_S = 0.5
# Ask for the fast stop this long before returning: time for cancel, hooks, checkpoint.
FORCE_LEAD_S = 1.5

SOURCES = {w.CTRL_C_EVENT: StopSource.CTRL_C, w.CTRL_BREAK_EVENT: StopSource.CTRL_BREAK,
           w.CTRL_CLOSE_EVENT: StopSource.CTRL_CLOSE, w.CTRL_LOGOFF_EVENT: StopSource.CTRL_LOGOFF,
           w.CTRL_SHUTDOWN_EVENT: StopSource.CTRL_SHUTDOWN}
# Windows' signal numbers: SIGINT is 2, SIGBREAK is 21.
SIGNALS = {"SIGINT": (2, StopSource.CTRL_C), "SIGBREAK": (21, StopSource.CTRL_BREAK)}


class WindowsConsoleBridge:
    """Console events to stop requests; restores the previous handlers on uninstall.

    `capture()` may be called before the loop exists: events that arrive before `install()`
    are queued and delivered at install, in order. `uninstall()` (the runtime has stopped)
    also releases console handlers that are waiting.
    """

    def __init__(self, win32: w.Win32 | None = None, *,
                 limits_s: dict[int, float] | None = None,
                 margin_s: float = MARGIN_S, force_lead_s: float = FORCE_LEAD_S) -> None:
        self._win32 = win32 or w.real()
        self._limits = dict(OS_LIMITS_S if limits_s is None else limits_s)
        self._margin, self._force_lead = margin_s, force_lead_s
        self._previous: dict[str, object] = {}
        self._request = Handover()
        self._finished = threading.Event()
        self._console = False

    def capture(self) -> None:
        if self._previous:
            return
        for name in SIGNALS:
            self._previous[name] = self._win32.set_signal_handler(name, self._on_signal)
        try:
            self._win32.set_console_handler(self._on_console, True)
            self._console = True
        except w.Win32Error:
            pass  # no console (a detached process): nothing will send these events

    def install(self, deliver: Deliver) -> None:
        self.capture()
        self._request.connect(deliver)

    def uninstall(self) -> None:
        for name, previous in self._previous.items():
            self._win32.set_signal_handler(name, previous)
        self._previous.clear()
        self._request.disconnect()
        # Release waiting handlers first: Windows (and Wine) hold the console's handler lock
        # while a handler runs, so removing ours would wait for it to return.
        self._finished.set()
        if self._console:
            self._win32.set_console_handler(self._on_console, False)
            self._console = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only record and hand over (gunicorn: no work in signal handlers).
        source = next(src for num, src in SIGNALS.values() if num == signum)
        self._request(StopRequest(source))

    def _on_console(self, event: int) -> bool:
        """On the console's own thread. True: handled (the C runtime's handler is skipped)."""
        if event not in self._limits or self._finished.is_set():
            return False  # CTRL_C, CTRL_BREAK: the C runtime raises SIGINT/SIGBREAK for us
        source = SOURCES[event]
        self._request(StopRequest(source, "console event"))
        limit = self._limits[event] - self._margin
        force_at = max(limit - self._force_lead, 0.0)
        if not self._finished.wait(force_at):
            self._request(StopRequest(source, f"console event: {limit:g}s limit near, fast stop"))
            self._finished.wait(max(limit - force_at, 0.0))
        return True
