"""Run a Runtime to the end on a loop of its own: the blocking entry points."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Sequence
from typing import Any

from graceful import logs
from graceful.bridge import StopBridge, default_bridge
from graceful.bridge.controls import PauseRequest
from graceful.bridge.stop import RestartRequest, StopObserver, StopRequest, StopSource
from graceful.config import Config
from graceful.errors import ConfigError, ExitCode
from graceful.host.loops import loop_factory
from graceful.host.pidfile import PidFile
from graceful.host.systemd import SystemdNotifier
from graceful.http.aiohttp_check import ensure_supported
from graceful.lifecycle import budget, loader, threads
from graceful.lifecycle.runtime import Runtime
from graceful.lifecycle.worker_link import WorkerLink

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


def run_to_end(app: loader.AppSource, config: Config | None = None, *,
               bridge: StopBridge | None = _DEFAULT, observers: Sequence[StopObserver] = (),
               configure_logging: bool = True, worker: WorkerLink | None = None,
               **options: Any) -> Finished:
    """`run`, reporting nothing of the threads: for the CLI, which waits for all of them.
    `worker`: we are a worker of graceful serve's supervisor, which holds the pid file, the
    systemd notifications and the restarts."""
    ensure_supported()  # an aiohttp graceful does not know is a ConfigError, not a crash later
    config = (config or Config()).replace(**options)
    if configure_logging:
        logs.configure(config.log_format, config.log_level)
    _, factory = loop_factory(config.loop, shared_sockets=getattr(worker, "sockets", None)
                              is not None)
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
    # the stop budget against the platform's limit, said at start (graceful/lifecycle/budget.py)
    budget.check_at_start(config, budget.gather(
        windows_console=type(bridge).__name__ == "WindowsConsoleBridge"))
    loop = factory()
    observers = list(observers)
    notifier = None
    if worker is not None:
        observers.append(worker)
    else:
        if (notifier := SystemdNotifier.from_environment()) is not None:
            observers.append(notifier)
        if config.pid_file is not None:
            observers.append(PidFile(config.pid_file))
    executor = threads.DefaultExecutor()
    loop.set_default_executor(executor)
    runtime = Runtime(app, config, observers=observers, takeover=worker)
    if notifier is not None:
        notifier.listeners = lambda: runtime.listeners
    deadline: float | None = None
    try:
        asyncio.set_event_loop(loop)
        code = loop.run_until_complete(_serve(runtime, bridge, worker is not None))
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
    return Finished(code, deadline, busy)


def run_target(target: str, config: Config, *, bridge: StopBridge | None = _DEFAULT,
               observers: Sequence[StopObserver] = (), configure_logging: bool = True
               ) -> ExitCode:
    """`run` for a `MODULE:ATTR` string."""
    return run(loader.import_target(target), config, bridge=bridge, observers=observers,
               configure_logging=configure_logging)


async def _serve(runtime: Runtime, bridge: StopBridge | None, is_worker: bool) -> ExitCode:
    loop = asyncio.get_running_loop()

    def deliver(request: StopRequest | RestartRequest) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to stop
            loop.call_soon_threadsafe(stop, request)

    def stop(request: StopRequest | RestartRequest) -> None:
        if not isinstance(request, RestartRequest):
            runtime.request_stop(request)
        elif is_worker:  # the supervisor replaces us: new workers serve already
            runtime.request_stop(StopRequest(StopSource.RESTART, "replaced by a new worker"))
        else:
            log.warning("restart.unsupported", source=request.source,
                        reason="a restart is graceful serve's (its supervisor replaces the "
                               "workers); graceful.run serves in this process")

    def control(request: PauseRequest) -> None:  # pause and continue: the runtime's own
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(runtime.request_stop, request)

    if bridge is not None:
        bridge.install(deliver)  # type: ignore[arg-type]
        if hasattr(bridge, "install_controls"):  # pause and continue (graceful/lifecycle/pause.py)
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
