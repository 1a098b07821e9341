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
import dataclasses
import errno
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from graceful.bridge import win32 as w
from graceful.bridge.windows_service import ServiceBridge
from graceful.cli.serve_options import parse_serve
from graceful.config import Config
from graceful.errors import ConfigError, ExitCode, GracefulError
from graceful.lifecycle import threads
from graceful.windows.log_retention import DAY_S, SERVICE_RETENTION, Retention
from graceful.windows.service_log import LOG_BACKUPS, LOG_MAX_BYTES, MemoryLog, RotatingWriter
from graceful.windows.service_status import ACCEPTED, ServiceReporter

# How long the end waits for the log's compression (10 MB: well under a second).
EXIT_COMPRESS_S = 10.0


class _HostArgs(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would print to None and exit
        raise ConfigError(f"service arguments: {message}")


def host_tail(argv: Sequence[str]) -> list[str]:
    """NAME ... of a service's command line as the SCM has it: after `app.exe service-host`
    (a bundle), or after `python -m MODULE` / `python -c BOOT`."""
    from graceful.windows.frozen import HOST_COMMAND

    if argv[1:2] == [HOST_COMMAND]:
        return list(argv[2:])
    return list(argv[3:])


def parse_host_args(argv: Sequence[str]) -> argparse.Namespace:
    """`NAME [--log-file F] [--log-retention-days N] [--app-dir D] -- <serve arguments>`."""
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = _HostArgs(prog="graceful-service", add_help=False)
    parser.add_argument("name")
    parser.add_argument("--log-file", type=Path)
    parser.add_argument("--log-retention-days", type=float)
    parser.add_argument("--app-dir")
    args = parser.parse_args(argv[:split])
    args.serve = argv[split + 1:]
    return args


def retention_for(args: argparse.Namespace) -> Retention:
    """The log's retention: the service policy, its period from --log-retention-days."""
    days = args.log_retention_days
    if days is None:
        return SERVICE_RETENTION
    return dataclasses.replace(SERVICE_RETENTION, keep_s=days * DAY_S)


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
        self.retention = SERVICE_RETENTION

    def run(self, run_target: Callable[..., ExitCode] | None = None, *,
            join_threads: Callable[[float], list[str]] | None = None) -> int:
        """Serve until a stop; the exit code. `join_threads` (threads.join_all, for the
        process' own exit) waits for the work the app left to threads, as the CLI does."""
        from graceful import logs

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
            code = self._serve(early, run_target, join_threads)
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
        if self.writer is not None and self.writer.housekeeper.busy:
            # a rotation (maybe made by the line above) still compressing: the process
            # ends with os._exit, which would cut it
            if self.bridge.requested:
                self.reporter.stop_pending(EXIT_COMPRESS_S)
            self.writer.finish(EXIT_COMPRESS_S)
        if dropped:
            self._event("warning", f"graceful service {self.name}: {self._log_state()}")
        if code != 0 and not self.bridge.requested:
            self._event("error", f"graceful service {self.name} failed with exit code "
                        f"{int(code)}: {error or 'see its log'}"
                        + (f" (address {address})" if address else "")
                        + f"; log: {self._log_state()}")
        self.reporter.end_start_progress()
        return int(code)

    def _serve(self, early: MemoryLog, run_target: Callable[..., ExitCode] | None,
               join_threads: Callable[[float], list[str]] | None) -> ExitCode:
        from graceful import logs

        args = parse_host_args(self.argv)
        self.name = args.name
        self.retention = retention_for(args)
        # install --env: Windows' SCM sets them from the service's Environment value, Wine's
        # does not; set what is missing (what the SCM did set is kept)
        with contextlib.suppress(Exception):
            for key, value in self.win32.query_service_environment(args.name):
                os.environ.setdefault(key, value)
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
        # Only now: the first START_PENDING's wait hint is the start's own budget (the SCM
        # shows START_PENDING from StartService on; reading the options takes milliseconds).
        self.reporter.starting()
        if self.writer is None:
            self._open_log(log_file_for(args.name, config), early)
        logs.configure("json", config.log_level, stream=self.writer)  # type: ignore[arg-type]
        log = logs.get_logger()
        log.info("service.starting", name=args.name, target=serve.target, pid=os.getpid(),
                 options=serve.options)
        if run_target is not None:
            return run_target(serve.target, config, bridge=self.bridge,
                              observers=[self.reporter], configure_logging=False)
        return self._run_to_end(serve.target, config, join_threads)

    def _run_to_end(self, target: str, config: Config,
                    join_threads: Callable[[float], list[str]] | None) -> ExitCode:
        if config.workers > 1:  # this process supervises them: service_workers.py
            from graceful.windows import service_workers

            reread = service_workers.reread_for(self.win32, self.name, self.argv)
            return service_workers.supervise(self, target, config, reread)
        from graceful.lifecycle import loader
        from graceful.lifecycle.runner import run_to_end

        finished = run_to_end(loader.import_target(target), config, bridge=self.bridge,
                              observers=[self.reporter], configure_logging=False)
        if join_threads is None:  # the process goes on: leave other threads to its owner
            return threads.reported(finished.code, finished.busy_executor_threads)
        # The SCM is told how long the wait may take; a stop control during it ends it.
        self.bridge.install(threads.stop_waiting)
        self.reporter.stop_pending(finished.threads_deadline - time.monotonic())
        return threads.reported(finished.code, join_threads(finished.threads_deadline))

    def _open_log(self, path: Path, early: MemoryLog) -> None:
        from graceful import logs

        self.writer = RotatingWriter(path, LOG_MAX_BYTES, LOG_BACKUPS,
                                     replace=self.win32.replace_file, clock=self.win32.monotonic,
                                     retention=self.retention)
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


def run_and_exit(host: ServiceHost) -> NoReturn:
    """SvcRun's body: serve, report the end to the SCM, and end the process."""
    try:
        code = host.run(join_threads=threads.join_all)
        reported = host.final_report(code)
    except BaseException as err:  # pywin32 would report STOPPED with 0x20000001
        host._event("error", f"graceful service {host.name}: {err!r}")
        code, reported = ExitCode.ERROR, False
    # End the process here: when SvcRun returns, pywin32's service_main reports STOPPED once
    # more with exit code 0, which would hide ours.
    os._exit(0 if reported else code)


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
            run_and_exit(self.host)

    return GracefulService


def main() -> None:
    """The entry point the SCM launches (see `graceful service install`)."""
    import servicemanager

    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(_service_class())
    servicemanager.StartServiceCtrlDispatcher()


if __name__ == "__main__":
    main()
