"""A Windows service with --workers above 1: the service's own process (the pid the SCM
knows, for the service's whole life) is the supervisor (graceful/supervisor/), and the
workers serve behind it.

    SCM STOP, SHUTDOWN, PRESHUTDOWN   every worker drains; STOP_PENDING rises every second
                                      with the time left as the wait hint
    control 129 (`service reload`)    a restart: new workers, each ready before an old one
                                      drains (rolling.py); the options are read again from
                                      the service's command line as the SCM has it now
    PAUSE, CONTINUE                   told to every worker; PAUSED / RUNNING reported once
                                      every worker has paused (its pause drained) or
                                      accepts again (graceful/supervisor/pausing.py)

The workers' output (their JSON log lines) goes to the service's log file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import sysconfig
from collections.abc import Callable
from typing import Any

from graceful.bridge.controls import PauseAction, PauseRequest
from graceful.bridge.stop import RestartRequest
from graceful.config import Config
from graceful.errors import ExitCode, GracefulError
from graceful.supervisor import orders


class ServiceControls:
    """The SCM's controls (graceful/bridge/windows_service.py) as the supervisor's requests
    (graceful/supervisor/sources.py)."""

    def __init__(self, bridge: Any, reporter: Any) -> None:
        self._bridge, self._reporter = bridge, reporter

    def install(self, loop: asyncio.AbstractEventLoop, requests: Any) -> None:
        def deliver(request: Any) -> None:  # the SCM's thread
            with contextlib.suppress(RuntimeError):  # the loop has closed
                if isinstance(request, RestartRequest):
                    loop.call_soon_threadsafe(requests.restart, request.source)
                else:
                    loop.call_soon_threadsafe(requests.stop, orders.STOP, str(request.source))

        def pause(request: PauseRequest) -> None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._pause, requests, request.action)

        self._bridge.install(deliver)
        self._bridge.install_controls(pause)

    def _pause(self, requests: Any, action: PauseAction) -> None:
        # PAUSE_PENDING or CONTINUE_PENDING is reported (the SCM's thread); the ScmNotifier
        # reports PAUSED or RUNNING once the workers have said so
        requests.pause_or_continue(orders.PAUSE if action is PauseAction.PAUSE
                                   else orders.CONTINUE)

    def workers_ready(self) -> None:
        pass

    def uninstall(self) -> None:
        self._bridge.uninstall()


class ScmNotifier:
    """What the supervisor says of the service's state, as SERVICE_STATUS reports."""

    def __init__(self, reporter: Any) -> None:
        self._reporter = reporter

    def ready(self) -> None:
        self._reporter.ready()

    def workers_stopping(self, running: int, time_left_s: float) -> None:
        self._reporter.stop_pending(time_left_s)  # a rising checkpoint each time

    def stopped(self, code: int) -> None:
        pass  # STOPPED is the host's to report, once the process is about to end

    def paused(self) -> None:
        self._reporter.paused()

    def resumed(self) -> None:
        self._reporter.resumed()

    def resume_failed(self, error: str) -> None:
        self._reporter.resume_failed(error)

    def reloading(self) -> None:
        pass

    def reloaded(self, reason: str | None) -> None:
        pass


def worker_entry() -> list[str]:
    """How a worker of the service starts: `python -m graceful`, from the interpreter the
    SCM runs (in a venv, the base one with the venv's site-packages, as the host does); from
    a bundle (graceful/windows/frozen.py), the executable itself, which has no `-m`."""
    from graceful.windows.frozen import is_frozen

    if is_frozen():
        return [sys.executable]
    if sys.prefix == sys.base_prefix:
        return [sys.executable, "-m", "graceful"]
    site = sysconfig.get_paths()["purelib"]
    boot = (f"import site, sys; site.addsitedir({site!r}); sys.argv[0] = 'graceful'; "
            "from graceful.cli.entry import main; main()")
    return [getattr(sys, "_base_executable", sys.executable), "-c", boot]


def supervise(host: Any, target: str, config: Config,
              reread: Callable[[], Config]) -> ExitCode:
    """Serve `target` with config.workers workers until a stop; the exit code."""
    from graceful.supervisor.main import supervise as run_supervisor
    from graceful.supervisor.start import start

    writer = host.writer
    output = None if writer is None else functools.partial(_write, writer)
    # The service's log is JSON: "auto" follows our stderr, which in a bundle's service host
    # made the workers' lines console text.
    if config.log_format == "auto":
        config = config.replace(log_format="json")
    # in the --app-dir the host has entered
    started = start(target, None, config, entry=worker_entry(), output=output)
    return run_supervisor(started, reread, sources=ServiceControls(host.bridge, host.reporter),
                          notifier=ScmNotifier(host.reporter))


def _write(writer: Any, data: bytes, stream: str, pid: int) -> None:
    from graceful.windows.service_output import as_json_lines

    with contextlib.suppress(Exception):  # the log never raises into the service
        writer.write(as_json_lines(data, stream, pid))
        writer.flush()


def reread_for(win32: Any, name: str, fallback: list[str]) -> Callable[[], Config]:
    """A reload's options: the service's command line as the SCM has it now (a reinstall
    may have changed it), else the one this process was started with."""
    from graceful.cli.serve_options import parse_serve
    from graceful.windows.service_host import host_tail, parse_host_args

    def reread() -> Config:
        argv = fallback
        with contextlib.suppress(Exception):
            argv = host_tail(win32.query_service_command(name))
        try:
            serve = parse_host_args(argv).serve
        except GracefulError:
            serve = parse_host_args(fallback).serve
        return parse_serve(serve, environ=False).config

    return reread
