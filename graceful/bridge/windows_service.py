"""graceful as a Windows service: SCM controls in, SERVICE_STATUS reports out.

The SCM starts `python -m graceful.bridge.windows_service NAME [--log-file F] [--app-dir D]
-- <serve arguments>` (what `graceful service install` writes). pywin32's servicemanager
calls `SvcRun` on a thread of its own, and control codes on the process' main thread:

- START_PENDING until the listeners are bound, then RUNNING, accepting STOP, SHUTDOWN and
  PRESHUTDOWN (pywin32 never advertises PRESHUTDOWN by itself; the preshutdown timeout is
  set at install from the stop budget, as recent Windows gives 10 s by default);
- a control only hands a StopRequest to the loop (SvcRun is not Python's main thread, so
  `signal.signal` is not available: the runtime runs with this bridge, no signals);
- during the stop, STOP_PENDING with a checkpoint that rises at every phase and drain tick,
  and a wait hint from the time left of the stop budget;
- at the end STOPPED, with our exit code as the service-specific exit code when it is not
  0. A runtime that ends with an error *without* having been asked to stop exits without
  reporting STOPPED, so that the SCM sees a crash and runs the recovery actions.

With no console, logs go as JSON lines to a file rotated by size.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from graceful.bridge import Deliver, Handover
from graceful.bridge import win32 as w
from graceful.errors import ExitCode, GracefulError
from graceful.stop import StopObserver, StopRequest, StopSource

HINT_SLACK_S = 2.0  # added to every wait hint: the loop closing, the process exiting
START_WAIT_HINT_MS = 30_000
ACCEPTED = w.SERVICE_ACCEPT_STOP | w.SERVICE_ACCEPT_SHUTDOWN | w.SERVICE_ACCEPT_PRESHUTDOWN
CONTROLS = {w.SERVICE_CONTROL_STOP: StopSource.SCM_STOP,
            w.SERVICE_CONTROL_SHUTDOWN: StopSource.SCM_SHUTDOWN,
            w.SERVICE_CONTROL_PRESHUTDOWN: StopSource.SCM_PRESHUTDOWN}
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


class ServiceReporter(StopObserver):
    """Turns the runtime's progress into SERVICE_STATUS reports (thread-safe: the SCM's
    thread and the loop's both report). Checkpoints rise strictly while pending."""

    def __init__(self, win32: w.Win32, handle: Any, stop_budget_s: float) -> None:
        self._win32, self._handle, self.budget_s = win32, handle, stop_budget_s
        self._lock = threading.Lock()
        self._checkpoint = 0
        self.state = w.SERVICE_STOPPED
        self.exit_code: int | None = None

    def _report(self, state: int, *, hint_s: float = 0.0, accepted: int = 0,
                exit_code: int = 0) -> None:
        with self._lock:
            if self.state == w.SERVICE_STOPPED and state != w.SERVICE_START_PENDING \
                    and self._checkpoint:
                return  # nothing after STOPPED
            pending = state in (w.SERVICE_START_PENDING, w.SERVICE_STOP_PENDING)
            if pending and state != self.state:
                self._checkpoint = 0
            self._checkpoint = self._checkpoint + 1 if pending else 0
            self.state = state
            status = w.ServiceStatus(
                state, accepted, w.ERROR_SERVICE_SPECIFIC_ERROR if exit_code else 0, exit_code,
                self._checkpoint, math.ceil(hint_s * 1000) if pending else 0)
            self._win32.set_service_status(self._handle, status)

    def starting(self) -> None:
        self._report(w.SERVICE_START_PENDING, hint_s=START_WAIT_HINT_MS / 1000)

    def stop_pending(self, time_left_s: float | None = None) -> None:
        left = self.budget_s if time_left_s is None else time_left_s
        self._report(w.SERVICE_STOP_PENDING, hint_s=max(left, 0.0) + HINT_SLACK_S)

    def final(self, code: int) -> None:
        self._report(w.SERVICE_STOPPED, exit_code=int(code))

    # StopObserver: called on the loop thread
    def ready(self) -> None:
        self._report(w.SERVICE_RUNNING, accepted=ACCEPTED)

    def phase(self, name: str, time_left_s: float) -> None:
        self.stop_pending(time_left_s)

    def drain_progress(self, in_flight: int, time_left_s: float) -> None:
        self.stop_pending(time_left_s)

    def stopped(self, exit_code: int) -> None:
        self.exit_code = exit_code
        self.stop_pending(0.0)


class ServiceBridge:
    """The StopBridge of a service: SCM controls become stop requests. A control that comes
    before the loop runs is kept and delivered at install."""

    def __init__(self, reporter: ServiceReporter) -> None:
        self._reporter = reporter
        self._handover = Handover()
        self.requested = False

    def install(self, deliver: Deliver) -> None:
        self._handover.connect(deliver)

    def uninstall(self) -> None:
        self._handover.disconnect()

    def control(self, code: int) -> int:
        """The SCM's handler (its thread): answer at once, the stop runs on the loop."""
        source = CONTROLS.get(code)
        if source is None:
            return 0 if code == w.SERVICE_CONTROL_INTERROGATE else 120  # NOT_IMPLEMENTED
        self.requested = True
        self._reporter.stop_pending()
        self._handover(StopRequest(source, "service control"))
        return 0


class RotatingWriter:
    """A text stream for structlog that appends to `path` and rotates it by size."""

    def __init__(self, path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS):
        self.path, self._max, self._backups = path, max_bytes, backups
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, text: str) -> int:
        with self._lock:
            self._file.write(text)
            self._file.flush()
            if self._file.tell() >= self._max:
                self._rotate()
        return len(text)

    def _rotate(self) -> None:
        self._file.close()
        for n in range(self._backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def isatty(self) -> bool:
        return False


def parse_host_args(argv: Sequence[str]) -> argparse.Namespace:
    """`NAME [--log-file F] [--app-dir D] -- <serve arguments>`."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="graceful-service")
    parser.add_argument("name")
    parser.add_argument("--log-file", type=Path)
    parser.add_argument("--app-dir")
    args = parser.parse_args(argv[:split])
    args.serve = argv[split + 1:]
    return args


class ServiceHost:
    """The service's life, on SvcRun's thread: from START_PENDING to the exit code."""

    def __init__(self, argv: Sequence[str], win32: w.Win32, handle: Any) -> None:
        self.args = parse_host_args(argv)
        self.win32 = win32
        self.reporter = ServiceReporter(win32, handle, stop_budget_s=30.0)
        self.bridge = ServiceBridge(self.reporter)

    def run(self, run_target: Callable[..., ExitCode] | None = None) -> int:
        from graceful import logs
        from graceful.service_cli import log_file_for, parse_serve

        self.reporter.starting()
        # A service still gets console events: the C runtime turns CTRL_LOGOFF and
        # CTRL_SHUTDOWN into SIGBREAK, whose default would end us. System shutdown
        # comes through the SCM's PRESHUTDOWN and SHUTDOWN controls instead.
        with contextlib.suppress(w.Win32Error):
            self.win32.set_console_handler(_ignore_console_event, True)
        log = logs.get_logger()
        try:
            if self.args.app_dir:
                os.chdir(self.args.app_dir)
                sys.path.insert(0, self.args.app_dir)
            target, config = parse_serve(self.args.serve)
            self.reporter.budget_s = config.stop_budget
            path = self.args.log_file or log_file_for(self.args.name, config)
            logs.configure("json", config.log_level, stream=RotatingWriter(path))  # type: ignore[arg-type]
            log.info("service.starting", name=self.args.name, target=target, pid=os.getpid())
            if run_target is None:
                from graceful.runner import run_target
            code = run_target(target, config, bridge=self.bridge, observers=[self.reporter],
                              configure_logging=False)
        except GracefulError as err:
            log.error("service.failed", error=str(err))
            code = err.exit_code
        except Exception as err:
            log.exception("service.crashed", error=repr(err))
            code = ExitCode.ERROR
        log.info("service.exit", code=int(code), stop_requested=self.bridge.requested)
        return int(code)

    def final_report(self, code: int) -> bool:
        """STOPPED with our code, unless this is a failure nobody asked for: then report
        nothing, so that the SCM sees a crash and runs the recovery actions. Returns
        whether STOPPED was reported."""
        if code != 0 and not self.bridge.requested:
            return False
        self.reporter.final(code)
        return True


def _ignore_console_event(event: int) -> bool:
    return event in (w.CTRL_LOGOFF_EVENT, w.CTRL_SHUTDOWN_EVENT)


def _service_class() -> type:
    import win32serviceutil

    class GracefulService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = "graceful"
        _svc_display_name_ = "graceful"

        def __init__(self, args: Sequence[str]) -> None:
            self._svc_name_ = args[0]
            super().__init__(args)  # registers the control handler: self.ssh
            self.host = ServiceHost(sys.argv[1:], w.real(), self.ssh)

        def GetAcceptedControls(self) -> int:
            return ACCEPTED

        def ServiceCtrlHandlerEx(self, control: int, event_type: int, data: Any) -> int:
            return self.host.bridge.control(control)

        def SvcRun(self) -> None:
            code = self.host.run()
            reported = self.host.final_report(code)
            # End the process here: when SvcRun returns, pywin32's service_main reports
            # STOPPED once more with exit code 0, which would hide ours.
            os._exit(0 if reported else code)

    return GracefulService


def main() -> None:
    """The entry point the SCM launches (see `graceful service install`)."""
    import servicemanager

    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(_service_class())
    servicemanager.StartServiceCtrlDispatcher()


if __name__ == "__main__":
    main()
