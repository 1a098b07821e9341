"""graceful as a Windows service: SCM controls in, SERVICE_STATUS reports out.

The SCM starts `python -m graceful.windows.service_host NAME [--log-file F] [--app-dir D]
-- <serve arguments>` (what `graceful service install` writes). pywin32's servicemanager
calls `SvcRun` on a thread of its own, and control codes on the process' main thread:

- START_PENDING until the listeners are bound, its checkpoint rising every second with a
  wait hint from what is left of the startup budget, already accepting STOP (a stop ends
  the start); then RUNNING, accepting STOP, SHUTDOWN and PRESHUTDOWN (pywin32 never
  advertises PRESHUTDOWN by itself; the preshutdown timeout is set at install from the
  stop budget, as recent Windows gives 10 s by default);
- a control only hands a StopRequest to the loop (SvcRun is not Python's main thread, so
  `signal.signal` is not available: the runtime runs with this bridge, no signals);
- during the stop, STOP_PENDING with a checkpoint that rises at every phase and drain tick,
  and a wait hint from the time left of the stop budget;
- at the end STOPPED, with our exit code as the service-specific exit code when it is not
  0. A runtime that ends with an error *without* having been asked to stop exits without
  reporting STOPPED, so that the SCM sees a crash and runs the recovery actions.

With no console, logs go as JSON lines to a file rotated by size (service_log.py), which
never raises into the runtime; what cannot go there goes to the Event Log.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from graceful.bridge import win32 as w
from graceful.bridge.windows_service import ServiceBridge
from graceful.config import Config
from graceful.errors import ConfigError, ExitCode, GracefulError
from graceful.serve_options import parse_serve
from graceful.stop import StopObserver
from graceful.windows.service_log import LOG_BACKUPS, LOG_MAX_BYTES, MemoryLog, RotatingWriter

HINT_SLACK_S = 2.0  # added to every wait hint: the loop closing, the process exiting
START_TICK_S = 1.0  # START_PENDING progress while the app starts
ACCEPTED = w.SERVICE_ACCEPT_STOP | w.SERVICE_ACCEPT_SHUTDOWN | w.SERVICE_ACCEPT_PRESHUTDOWN


class ServiceReporter(StopObserver):
    """Turns the runtime's progress into SERVICE_STATUS reports (thread-safe: the SCM's
    thread, the start ticker and the loop all report). Checkpoints rise strictly while
    pending; nothing is reported after STOPPED."""

    def __init__(self, win32: w.Win32, handle: Any, stop_budget_s: float) -> None:
        self._win32, self._handle, self.budget_s = win32, handle, stop_budget_s
        self.startup_budget_s = Config().startup_timeout
        self._lock = threading.Lock()
        self._checkpoint = 0
        self._final = False
        self._started_at = 0.0
        self._ticker = threading.Event()
        self.state = w.SERVICE_STOPPED
        self.exit_code: int | None = None

    def _report(self, state: int, *, hint_s: float = 0.0, accepted: int = 0,
                exit_code: int = 0, only_from: int | None = None) -> None:
        with self._lock:
            if self._final:
                return  # nothing after STOPPED
            if only_from is not None and self.state != only_from:
                return  # a start tick that lost the race with a stop control
            pending = state in (w.SERVICE_START_PENDING, w.SERVICE_STOP_PENDING)
            if pending and state != self.state:
                self._checkpoint = 0
            self._checkpoint = self._checkpoint + 1 if pending else self._checkpoint
            self.state = state
            self._final = state == w.SERVICE_STOPPED
            status = w.ServiceStatus(
                state, accepted, w.ERROR_SERVICE_SPECIFIC_ERROR if exit_code else 0, exit_code,
                self._checkpoint if pending else 0, math.ceil(hint_s * 1000) if pending else 0)
            self._win32.set_service_status(self._handle, status)

    def starting(self) -> None:
        """START_PENDING, accepting STOP (a stop ends the start), then progress every
        START_TICK_S with a wait hint from what is left of the startup budget, until the
        state changes or the budget is spent (then the SCM's own timeout shows the hang)."""
        self._started_at = self._win32.monotonic()
        self._report(w.SERVICE_START_PENDING, accepted=ACCEPTED,
                     hint_s=self.startup_budget_s + HINT_SLACK_S)
        threading.Thread(target=self._tick_start, name="graceful.start-progress",
                         daemon=True).start()

    def _start_left(self) -> float:
        return self.startup_budget_s - (self._win32.monotonic() - self._started_at)

    def _tick_start(self) -> None:
        while not self._ticker.wait(START_TICK_S):
            left = self._start_left()
            if self.state != w.SERVICE_START_PENDING or left <= 0:
                return
            self._report(w.SERVICE_START_PENDING, accepted=ACCEPTED,
                         hint_s=left + HINT_SLACK_S, only_from=w.SERVICE_START_PENDING)

    def end_start_progress(self) -> None:
        self._ticker.set()

    def stop_pending(self, time_left_s: float | None = None) -> None:
        left = self.budget_s if time_left_s is None else time_left_s
        self._report(w.SERVICE_STOP_PENDING, hint_s=max(left, 0.0) + HINT_SLACK_S)

    def final(self, code: int) -> None:
        self._ticker.set()
        self._report(w.SERVICE_STOPPED, exit_code=int(code))

    # StopObserver: called on the loop thread
    def ready(self) -> None:
        self._ticker.set()
        self._report(w.SERVICE_RUNNING, accepted=ACCEPTED)

    def phase(self, name: str, time_left_s: float) -> None:
        self.stop_pending(time_left_s)

    def drain_progress(self, in_flight: int, time_left_s: float) -> None:
        self.stop_pending(time_left_s)

    def stopped(self, exit_code: int) -> None:
        self.exit_code = exit_code
        self.stop_pending(0.0)


class _HostArgs(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would print to None and exit
        raise ConfigError(f"service arguments: {message}")


def parse_host_args(argv: Sequence[str]) -> argparse.Namespace:
    """`NAME [--log-file F] [--app-dir D] -- <serve arguments>`."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = _HostArgs(prog="graceful-service", add_help=False)
    parser.add_argument("name")
    parser.add_argument("--log-file", type=Path)
    parser.add_argument("--app-dir")
    args = parser.parse_args(argv[:split])
    args.serve = argv[split + 1:]
    return args


def log_file_for(name: str, config: Config) -> Path:
    """Where a service logs when not told: next to its checkpoint, else under ProgramData."""
    if config.checkpoint is not None:
        return config.checkpoint.parent / f"{name}.log"
    base = os.environ.get("PROGRAMDATA") or tempfile.gettempdir()
    return Path(base) / "graceful" / f"{name}.log"


class ServiceHost:
    """The service's life, on SvcRun's thread: from START_PENDING to the exit code.

    Every path leaves a trace: lines logged before the log file is known are kept in memory
    and written to it once it is; the log file never raises (a line it cannot write is
    dropped and counted); a failure nobody asked for also goes to the Event Log, and so
    does a log file that cannot be written. Nothing here raises: SvcRun raising would make
    pywin32 report STOPPED with its own 0x20000001."""

    def __init__(self, argv: Sequence[str], win32: w.Win32, handle: Any) -> None:
        self.argv = list(argv)
        self.name = self.argv[0] if self.argv else "graceful"
        self.win32 = win32
        self.reporter = ServiceReporter(win32, handle, stop_budget_s=Config().stop_budget)
        self.bridge = ServiceBridge(self.reporter)
        self.writer: RotatingWriter | None = None
        self.config: Config | None = None

    def run(self, run_target: Callable[..., ExitCode] | None = None) -> int:
        from graceful import logs

        self.reporter.starting()
        # A service still gets console events: the C runtime turns CTRL_LOGOFF and
        # CTRL_SHUTDOWN into SIGBREAK, whose default would end us. System shutdown
        # comes through the SCM's PRESHUTDOWN and SHUTDOWN controls instead.
        with contextlib.suppress(w.Win32Error):
            self.win32.set_console_handler(_ignore_console_event, True)
        early = MemoryLog()
        # Before anything can fail: structlog's default writes to sys.stdout, None here.
        logs.configure("json", "info", stream=early)  # type: ignore[arg-type]
        log = logs.get_logger()
        error, address = "", None
        try:
            code = self._serve(early, run_target)
        except GracefulError as err:
            error, code = str(err), err.exit_code
            address = self._address_in_use(err)
            log.error("service.failed", error=error, **({"address": address} if address else {}))
        except Exception as err:
            error, code = repr(err), ExitCode.ERROR
            log.error("service.crashed", error=error, exc_info=err)
        if self.writer is None:  # the log file was never known: keep what we have
            self._event("error", f"graceful service {self.name}: no log file; "
                        f"what it logged:\n{early.text}")
        dropped = self.writer.dropped if self.writer else 0
        log.info("service.exit", code=int(code), stop_requested=self.bridge.requested,
                 log_lines_dropped=dropped)
        if dropped:
            self._event("warning", f"graceful service {self.name}: {self._log_state()}")
        if code != 0 and not self.bridge.requested:
            self._event("error", f"graceful service {self.name} failed with exit code "
                        f"{int(code)}: {error or 'see its log'}"
                        + (f" (address {address})" if address else "")
                        + f"; log: {self._log_state()}")
        self.reporter.end_start_progress()
        return int(code)

    def _serve(self, early: MemoryLog, run_target: Callable[..., ExitCode] | None) -> ExitCode:
        from graceful import logs

        args = parse_host_args(self.argv)
        self.name = args.name
        if args.log_file:  # known now: what fails from here on is in the file
            self._open_log(args.log_file, early)
        if args.app_dir:
            try:
                os.chdir(args.app_dir)
            except OSError as err:
                raise ConfigError(f"--app-dir {args.app_dir}: {err.strerror}") from None
            sys.path.insert(0, args.app_dir)
        # The options are on our command line (resolved at install); the SCM starts us with
        # the system's environment, whose GRACEFUL_* must not change them.
        serve = parse_serve(args.serve, environ=False)
        self.config = config = serve.config
        self.reporter.budget_s = config.stop_budget
        self.reporter.startup_budget_s = config.startup_timeout
        if self.writer is None:
            self._open_log(log_file_for(args.name, config), early)
        logs.configure("json", config.log_level, stream=self.writer)  # type: ignore[arg-type]
        log = logs.get_logger()
        log.info("service.starting", name=args.name, target=serve.target, pid=os.getpid(),
                 options=serve.options)
        if run_target is None:
            from graceful.runner import run_target
        return run_target(serve.target, config, bridge=self.bridge, observers=[self.reporter],
                          configure_logging=False)

    def _open_log(self, path: Path, early: MemoryLog) -> None:
        from graceful import logs

        self.writer = RotatingWriter(path, LOG_MAX_BYTES, LOG_BACKUPS,
                                     replace=self.win32.replace_file, clock=self.win32.monotonic)
        logs.configure("json", "info", stream=self.writer)  # type: ignore[arg-type]
        early.replay(self.writer)
        if self.writer.error:
            self._event("warning", f"graceful service {self.name}: cannot write its log "
                        f"file {path} ({self.writer.error}); lines are dropped and counted "
                        "until it can")

    def _address_in_use(self, err: BaseException) -> str | None:
        """host:port when the start failed because the address is in use (10048 on
        Windows), for the log line and the Event Log."""
        cause: BaseException | None = err
        while cause is not None:
            if isinstance(cause, OSError) and cause.errno in (errno.EADDRINUSE, 10048):
                config = self.config
                return f"{config.host}:{config.port}" if config else None
            cause = cause.__cause__ or cause.__context__
        return None

    def _log_state(self) -> str:
        if self.writer is None:
            return "none"
        if self.writer.error and self.writer.dropped:
            return f"{self.writer.path} ({self.writer.dropped} lines dropped: {self.writer.error})"
        return str(self.writer.path)

    def _event(self, kind: str, message: str) -> None:
        with contextlib.suppress(Exception):  # the last place to write to: nothing after it
            self.win32.report_event(kind, message)

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
            try:
                code = self.host.run()
                reported = self.host.final_report(code)
            except BaseException as err:  # pywin32 would report STOPPED with 0x20000001
                self.host._event("error", f"graceful service {self.host.name}: {err!r}")
                code, reported = ExitCode.ERROR, False
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
