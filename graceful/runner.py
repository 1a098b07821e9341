"""Run a Runtime to the end on a loop of its own: the blocking entry points."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from graceful import loader, logs
from graceful.aiohttp_internals import ensure_supported
from graceful.bridge import StopBridge, default_bridge
from graceful.config import Config
from graceful.errors import ExitCode
from graceful.loops import loop_factory
from graceful.runtime import Runtime
from graceful.stop import StopObserver
from graceful.systemd import SystemdNotifier

# Tasks still alive when the runtime has finished (a handler that swallowed its
# cancellation, say) get this long before the loop is closed under them.
LEFTOVER_TASKS_GRACE_S = 0.5

_DEFAULT: Any = object()


def run(app: loader.AppSource, config: Config | None = None, *,
        bridge: StopBridge | None = _DEFAULT, observers: Sequence[StopObserver] = (),
        configure_logging: bool = True, **options: Any) -> ExitCode:
    """Serve `app` (an Application or a sync/async factory) until a stop, and return the
    exit code. Blocks. Installs the platform's stop bridge (POSIX signals, Windows console
    events) unless `bridge` says otherwise; `bridge=None` leaves stopping to observers and
    the API. Options are Config fields. Raises GracefulError when the start fails.
    """
    ensure_supported()  # an aiohttp graceful does not know is a ConfigError, not a crash later
    config = (config or Config()).replace(**options)
    if configure_logging:
        logs.configure(config.log_format, config.log_level)
    _, factory = loop_factory(config.loop)
    if bridge is _DEFAULT:
        # Signal handlers can only be set from the main thread; elsewhere the caller stops
        # the runtime through an observer, its own bridge, or Runtime.stop.
        bridge = default_bridge() if threading.current_thread() is threading.main_thread() else None
    notifier = SystemdNotifier.from_environment()
    observers = [*observers, notifier] if notifier else list(observers)
    loop = factory()
    runtime = Runtime(app, config, observers=observers)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(_serve(runtime, bridge))
    finally:
        _close(loop)


def run_target(target: str, config: Config, *, bridge: StopBridge | None = _DEFAULT,
               observers: Sequence[StopObserver] = (), configure_logging: bool = True
               ) -> ExitCode:
    """`run` for a `MODULE:ATTR` string."""
    return run(loader.import_target(target), config, bridge=bridge, observers=observers,
               configure_logging=configure_logging)


async def _serve(runtime: Runtime, bridge: StopBridge | None) -> ExitCode:
    loop = asyncio.get_running_loop()
    if bridge is not None:
        bridge.install(lambda request: loop.call_soon_threadsafe(runtime.request_stop, request))
    try:
        await runtime.start()
        return await runtime.wait_stopped()
    finally:
        if bridge is not None:
            bridge.uninstall()


def _close(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop without waiting forever on tasks that will not end."""
    try:
        leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_TASKS_GRACE_S))
        with contextlib.suppress(TimeoutError):
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(),
                                                     LEFTOVER_TASKS_GRACE_S))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
