"""Serving in this process, without click: a supervisor's worker (`graceful worker`, which
the entry point runs without importing click: 30 to 50 ms of every worker's start), and
`graceful serve` on Windows with one worker. Also the command line's way to fail and exit.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from graceful.config import Config
from graceful.errors import ExitCode, GracefulError


def worker_main(argv: Sequence[str]) -> None:
    """`graceful worker [MODULE:ATTR] [--app-dir DIR]`: what the supervisor spawns."""
    parser = argparse.ArgumentParser(prog="graceful worker", description=worker.__doc__)
    parser.add_argument("target", metavar="MODULE:ATTR", nargs="?")
    parser.add_argument("--app-dir", default=None)
    args = parser.parse_args(argv)
    worker(args.target, args.app_dir)


def worker(target: str | None, app_dir: str | None) -> None:
    """One worker of `graceful serve`'s supervisor (started by it, not by hand). Without
    MODULE:ATTR it is the early one, told what to serve once the supervisor knows."""
    from graceful.bridge import default_bridge

    windows = sys.platform == "win32"
    # Windows: its orders come on stdin once its configuration has (lifecycle/worker_link.py)
    bridge = None if windows else default_bridge()
    if hasattr(bridge, "capture"):
        bridge.capture()  # from here a stop signal is a clean stop, not a kill
        import signal

        from graceful.supervisor.early import CAUGHT

        # blocked by the supervisor's spawn until now; one that came meanwhile is delivered
        signal.pthread_sigmask(signal.SIG_UNBLOCK, CAUGHT)
    from graceful.errors import ConfigError
    from graceful.lifecycle import imports

    with imports.structlog_without_extras():  # rich: 45-80 ms of the start, never used
        from graceful.lifecycle.worker_link import WorkerLink

    link = WorkerLink.from_environment()
    try:
        if link is None:
            raise ConfigError("graceful worker is started by graceful serve's supervisor")
        link.follow_supervisor()
        if link.early:
            import_runtime()  # while the supervisor reads its command line and binds
            target, app_dir = link.setup()
        if target is None:
            raise ConfigError("graceful worker needs MODULE:ATTR")
        config = link.config()
    except GracefulError as err:
        fail_now(err)
    if windows:
        from graceful.bridge.supervised import SupervisedBridge

        bridge = SupervisedBridge(sys.stdin.buffer)
        bridge.capture()
    serve_in_process(target, app_dir, config, bridge, link)


@functools.cache  # once: an early worker imports it before its setup arrives
def import_runtime() -> None:
    """graceful's runtime and aiohttp, before the app's import (which would import aiohttp
    unchecked), with the collector off."""
    from graceful.lifecycle import heap

    with heap.imports_frozen():  # graceful's own imports: no collector walking them (10 ms)
        from graceful.lifecycle import imports

        with imports.structlog_without_extras():  # rich: 45-80 ms of the start, never used
            importlib.import_module("graceful.logs")
        from graceful.http import aiohttp_check

        try:
            aiohttp_check.ensure_supported()  # before the app's own import of aiohttp
        except GracefulError as err:
            fail(err)
        importlib.import_module("graceful.lifecycle.runner")


def serve_in_process(target: str, app_dir: str | None, config: Config, bridge: Any,
                     link: Any = None) -> Any:
    from graceful.lifecycle import heap

    import_runtime()
    from graceful import logs
    from graceful.lifecycle import loader

    try:
        try:
            source = loader.import_target(target, app_dir)
        except GracefulError as err:
            (fail if link is None else fail_now)(err)
        logs.configure(config.log_format, config.log_level, fallback=fallback_stream())
        code = _run(source, config, bridge, link)
    finally:
        heap.thaw_imports()  # where the process outlives the serve (a test's CliRunner)
    exit_now(code)


def _run(source: Any, config: Config, bridge: Any, link: Any = None) -> ExitCode:
    from graceful import logs
    from graceful.lifecycle import threads
    from graceful.lifecycle.runner import run_to_end

    log = logs.get_logger()
    deadline = None
    try:
        finished = run_to_end(source, config, bridge=bridge, configure_logging=False,
                              worker=link)
        code, deadline = finished.code, finished.threads_deadline
    except GracefulError as err:
        log.error("process.failed", error=str(err))
        code = err.exit_code
    except Exception as err:
        log.exception("process.crashed", error=repr(err))
        code = ExitCode.ERROR
    if hasattr(bridge, "capture"):  # its handlers stay: a stop now ends the wait below
        bridge.install(_stops_only(threads.stop_waiting))
    if deadline is None:  # the start failed: no stop budget
        deadline = time.monotonic() + threads.RESERVE_S
    code = threads.reported(code, threads.join_all(deadline))
    log.info("process.exit", code=int(code), log_lines_dropped=logs.dropped_lines())
    return code


def _stops_only(func: Any) -> Any:
    """A restart request (SIGHUP) once the runtime has finished is ignored."""
    from graceful.bridge.stop import StopRequest

    return lambda request: func(request) if isinstance(request, StopRequest) else None


def fallback_stream() -> Any:
    """Where to say that log lines are being dropped: stdout, unless it is the log's own
    file (`2>&1`), which would be broken too."""
    try:
        out, err = os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    return None if (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino) else sys.stdout


def fail(err: GracefulError | str, code: ExitCode | None = None) -> Any:
    """One line on stderr, then exit with `code` (else the error's own)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"graceful: error: {err}", file=sys.stderr, flush=True)
    exit_code = code if code is not None else getattr(err, "exit_code", ExitCode.ERROR)
    exit_flushed(exit_code)


def fail_now(err: GracefulError) -> Any:
    """A worker's failed start: one line on stderr, then its code without the interpreter's
    teardown, which on Windows can crash (0xC0000005, "could not acquire lock for <stdin>")
    while the thread reading its orders holds stdin (graceful/bridge/supervised.py)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"graceful: error: {err}", file=sys.stderr, flush=True)
    flush_std_streams()
    os._exit(int(err.exit_code))


def exit_now(code: int) -> Any:
    """Exit once the stop is complete, without the interpreter's teardown.

    Threads were waited for (bounded) in _run, as the interpreter would have; atexit
    handlers still run (logging's flush, the application's own). What is skipped is freeing
    every module and object one by one, which took 40 to 90 ms here after aiohttp: time the
    supervisor would count against the drain. Where graceful.lifecycle.threads cannot wait for
    threads as the interpreter does, the interpreter's own exit is taken.
    """
    from graceful.lifecycle import threads

    if not threads.supported():
        exit_flushed(code)
    threads.run_atexit_handlers()
    flush_std_streams()
    os._exit(int(code))


def exit_flushed(code: int) -> Any:
    flush_std_streams()
    sys.exit(int(code))


def flush_std_streams() -> None:
    """A reader that went away (`| head -1`) must not change the exit code."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
