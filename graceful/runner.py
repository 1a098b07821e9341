"""Run a Runtime to the end on a loop of its own: the blocking entry points."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from graceful import budget, loader, logs, threads
from graceful.bridge import StopBridge, default_bridge
from graceful.config import Config
from graceful.controls import PauseRequest
from graceful.errors import ConfigError, ExitCode
from graceful.http.aiohttp_check import ensure_supported
from graceful.loops import loop_factory
from graceful.pidfile import PidFile
from graceful.reload import ReloadWatcher, app_folder
from graceful.restart import Restarter
from graceful.runtime import Runtime
from graceful.stop import RestartRequest, StopObserver, StopRequest
from graceful.systemd import SystemdNotifier
from graceful.takeover import SuccessorReport

# Tasks still alive when the runtime has finished (a handler that swallowed its
# cancellation, say) get this long before the loop is closed under them.
LEFTOVER_TASKS_GRACE_S = 0.5

_DEFAULT: Any = object()

log = logs.get_logger()


def run(app: loader.AppSource, config: Config | None = None, *,
        bridge: StopBridge | None = _DEFAULT, observers: Sequence[StopObserver] = (),
        configure_logging: bool = True, **options: Any) -> ExitCode:
    """Serve `app` (an Application or a sync/async factory) until a stop, and return the
    exit code. Blocks. Installs the platform's stop bridge (POSIX signals, Windows console
    events) unless `bridge` says otherwise; `bridge=None` leaves stopping to observers and
    the API. Off the main thread, which cannot catch signals, `bridge` must be given (None
    or one of the caller's): ConfigError otherwise. Options are Config fields. Raises
    GracefulError when the start fails.

    Returns once the loop's default executor has run the jobs given to it (as asyncio.run
    does), until the end of the stop budget plus threads.RESERVE_S; threads still busy then
    are logged (`exit.abandoned_threads`) and the exit code is 3. Other threads the app
    started are left to the interpreter's exit.
    """
    finished = run_to_end(app, config, bridge=bridge, observers=observers,
                          configure_logging=configure_logging, **options)
    return threads.reported(finished.code, finished.busy_executor_threads)


@dataclasses.dataclass(frozen=True)
class Finished:
    code: ExitCode
    # Until when (time.monotonic()) work left to threads is waited for: the end of the stop
    # budget plus threads.RESERVE_S.
    threads_deadline: float
    busy_executor_threads: list[str]  # the default executor's, still busy at the deadline
    handed_over_to: int | None = None  # a restart's successor, serving now


def run_to_end(app: loader.AppSource, config: Config | None = None, *,
               bridge: StopBridge | None = _DEFAULT, observers: Sequence[StopObserver] = (),
               configure_logging: bool = True, **options: Any) -> Finished:
    """`run`, reporting nothing of the threads: for the CLI, which waits for all of them."""
    ensure_supported()  # an aiohttp graceful does not know is a ConfigError, not a crash later
    config = (config or Config()).replace(**options)
    if configure_logging:
        logs.configure(config.log_format, config.log_level)
    _, factory = loop_factory(config.loop)
    if bridge is _DEFAULT:
        # Signal handlers can only be set from the main thread. Serving on without them
        # would leave SIGTERM to kill the process mid-request (143): refuse instead.
        if threading.current_thread() is not threading.main_thread():
            raise ConfigError(
                "graceful.run() must be called from the main thread, the only one that can "
                "catch stop signals; on another thread pass bridge=None and stop it yourself "
                "(an observer, or graceful.Runtime and runtime.stop()), leaving the process's "
                "signals to its main thread")
        bridge = default_bridge()
    # the stop budget against the platform's limit, said at start (graceful/budget.py)
    budget.check_at_start(config, budget.gather(
        windows_console=type(bridge).__name__ == "WindowsConsoleBridge"))
    loop = factory()
    notifier = SystemdNotifier.from_environment()
    observers = [*observers, notifier] if notifier else list(observers)
    if config.pid_file is not None:
        observers.append(PidFile(config.pid_file))
    if (takeover := SuccessorReport.from_environment()) is not None:  # we are a successor
        observers.append(takeover)
    # a restart re-runs this process's command line: only where SIGHUP reaches us
    restarter = (Restarter.for_this_process(config.restart_timeout)
                 if bridge is not None and sys.platform != "win32" else None)
    if restarter is not None:
        observers.append(restarter)
        restarter.notifier = notifier
    executor = threads.DefaultExecutor()
    loop.set_default_executor(executor)
    if restarter is not None and config.reload:
        def restart_soon(request: RestartRequest) -> None:  # from the watcher's thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(restarter.request, request)

        observers.append(ReloadWatcher(app_folder(app), restart_soon))
    runtime = Runtime(app, config, observers=observers, takeover=takeover)
    if notifier is not None:
        notifier.listeners = lambda: runtime.listeners
    if restarter is not None:
        restarter.attach(runtime)
    deadline: float | None = None
    try:
        asyncio.set_event_loop(loop)
        code = loop.run_until_complete(_serve(runtime, bridge, restarter))
        deadline = time.monotonic() + runtime.stop_time_left + threads.RESERVE_S
    finally:
        if deadline is None:  # the start failed: no stop budget
            deadline = time.monotonic() + threads.RESERVE_S
        # The bridge outlives the loop's close: a signal during the leftover grace is a late
        # stop request (logged, ignored), not the default action (-15, KeyboardInterrupt).
        try:
            busy = _close(loop, executor, deadline)
        finally:
            if bridge is not None:
                bridge.uninstall()
    return Finished(code, deadline, busy, restarter.handed_over_to if restarter else None)


def run_target(target: str, config: Config, *, bridge: StopBridge | None = _DEFAULT,
               observers: Sequence[StopObserver] = (), configure_logging: bool = True
               ) -> ExitCode:
    """`run` for a `MODULE:ATTR` string."""
    return run(loader.import_target(target), config, bridge=bridge, observers=observers,
               configure_logging=configure_logging)


async def _serve(runtime: Runtime, bridge: StopBridge | None,
                 restarter: Restarter | None = None) -> ExitCode:
    loop = asyncio.get_running_loop()

    def deliver(request: StopRequest | RestartRequest) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to stop
            if isinstance(request, RestartRequest):
                if restarter is not None:
                    loop.call_soon_threadsafe(restarter.request, request)
                return
            loop.call_soon_threadsafe(stop, request)

    def stop(request: StopRequest) -> None:
        if restarter is None or not restarter.forward_stop(request):
            runtime.request_stop(request)

    def control(request: PauseRequest) -> None:  # pause and continue: the runtime's own
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(runtime.request_stop, request)

    if bridge is not None:
        bridge.install(deliver)  # type: ignore[arg-type]
        if hasattr(bridge, "install_controls"):  # pause and continue (graceful/pause.py)
            bridge.install_controls(control)
    await runtime.start()
    return await runtime.wait_stopped()


def _close(loop: asyncio.AbstractEventLoop, executor: threads.DefaultExecutor,
           deadline: float) -> list[str]:
    """Close the loop without waiting forever on tasks or executor jobs that will not end;
    return the names of the default executor's threads still busy at `deadline`."""
    try:
        leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            log.info("loop.leftover_tasks", tasks=len(leftovers), grace_s=LEFTOVER_TASKS_GRACE_S)
            loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_TASKS_GRACE_S))
        with contextlib.suppress(TimeoutError):
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(),
                                                     LEFTOVER_TASKS_GRACE_S))
        try:
            return loop.run_until_complete(executor.shutdown_until(deadline))
        except KeyboardInterrupt:  # the stop handlers are gone by now: Ctrl+C ends the wait
            return executor.busy_threads()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
