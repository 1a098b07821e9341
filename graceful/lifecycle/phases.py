"""The stop's phases, each one call that takes its time from the stop budget and returns
its exit code. runtime.py orders them; this module says what each one does."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from graceful.config import Config
from graceful.errors import ExitCode, worst
from graceful.http import route_deadlines, stopnotice, websockets
from graceful.lifecycle import hooks
from graceful.lifecycle.deadline import StopBudget
from graceful.lifecycle.flushing import Flusher
from graceful.lifecycle.startup import Started
from graceful.logs import get_logger

log = get_logger()


class StopPhases:
    """The stop of what `started` serves. `budget()` is the stop budget as it is now (a
    force replaces it); `force` is set by a second stop request. `kind` is "restart" when
    new workers already serve the same sockets: handlers are told so, and websockets get
    1012 (service restart: reconnect at once) instead of 1001."""

    def __init__(self, started: Started, config: Config, *, budget: Callable[[], StopBudget],
                 force: asyncio.Event, hooks: list[hooks.ShutdownHook], flusher: Flusher,
                 forced: Callable[[], bool], notify: Callable[..., None],
                 kind: str = "stop") -> None:
        self._started = started
        self._kind = kind
        self._config = config
        self._budget = budget
        self._force = force
        self._hooks = hooks
        self._flusher = flusher
        self._forced = forced
        self._notify = notify
        self.drained = False

    async def pre_stop(self) -> ExitCode:
        """Keep serving, with Connection: close, while load balancers deregister us."""
        delay = self._budget().left(self._budget().accept_until)
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._force.wait()
        return ExitCode.OK

    async def stop_accepting(self) -> ExitCode:
        """Refuse new connections; the ones already queued in the kernel are served."""
        started = time.perf_counter()
        # gathered: every listener stops accepting in the same instant (each close runs to
        # its first await), then their queues are served together
        queued = sum(await asyncio.gather(*(listener.close()
                                            for listener in self._started.listeners)))
        log.info("listeners.closed", queued_connections=queued,
                 took_s=round(time.perf_counter() - started, 4))
        return ExitCode.OK

    async def drain(self) -> ExitCode:
        """aiohttp's on_shutdown, websockets 1001, then wait for the requests in flight."""
        started = time.perf_counter()
        tracker, app = self._started.tracker, self._started.app
        began, drain_until = self._budget().now(), self._budget().drain_until
        stopnotice.fire(app, self._kind, began=began, drain_until=drain_until)
        # requests on routes with a deadline of their own are cut at it (None: no such route)
        cutter = route_deadlines.RouteCutter.start(
            app, tracker, began=began, drain_until=drain_until,
            grace=self._config.cancel_grace, request_of=lambda i: i.protocol.current_request())
        on_shutdown = asyncio.ensure_future(self._on_shutdown())
        self.drained = False
        try:
            self.drained = await tracker.drain(drain_until, self._force,
                                               self._on_drain_progress)
        finally:
            if cutter is not None:
                await cutter.finish(self.drained)
        failures = await on_shutdown
        if failures:
            self._notify("hooks_failed", [f.name for f in failures])
        code = ExitCode.HOOK_FAILED if failures else ExitCode.OK
        if cutter is not None and cutter.cut:  # work was cut at a route's deadline: exit 3
            code = worst(code, ExitCode.DRAIN_DEADLINE)
        tracker.stop_closing_websockets()
        if tracker.hand_off is not None:
            tracker.hand_off.report(tracker.closed_while_stopping)
        if self.drained:
            log.info("drain.done", took_s=round(time.perf_counter() - started, 4))
        return code

    async def _on_shutdown(self) -> list[hooks.HookFailure]:
        """aiohttp's on_shutdown, each handler bounded; then 1001 to the websockets it left
        open. Not at once: aiohttp's recipe has on_shutdown say goodbye to its websockets
        and close them itself, and our close would cut that goodbye (an app shaped as
        aiohttp's docs show: tests/test_app_shapes_e2e.py)."""
        app = self._started.app
        failures = await hooks.run_steps(
            hooks.signal_steps(app, app.on_shutdown), self._config.hook_timeout,
            lambda: self._budget().left(self._budget().drain_until))
        close = websockets.WebSocketClose(reason=self._config.websocket_close_reason,
                                          timeout=self._config.websocket_close_timeout)
        if self._kind == "restart":
            close = websockets.restart_close(close)
        self._started.tracker.close_websockets(close)
        return failures

    async def cancel(self) -> ExitCode:
        """Handlers still running at the drain deadline: cancelled, given the grace."""
        tracker = self._started.tracker
        grace = self._budget().left(self._budget().cancel_until)
        remaining = len(tracker.requests_in_flight())
        cancelled = await tracker.cancel_in_flight(grace)
        log.warning("drain.deadline", cancelled=len(cancelled), forced=self._forced(),
                    cancelled_streams=sum(c.stream for c in cancelled),
                    cancelled_requests=sum(not c.stream for c in cancelled),
                    open_connections=len(tracker.connections) if remaining == 0 else None,
                    requests=[{"method": c.method, "path": c.path, "age_s": c.age_s,
                               "unwound": c.unwound, "stream": c.stream} for c in cancelled])
        return ExitCode.DRAIN_DEADLINE if cancelled else ExitCode.OK

    async def hooks(self) -> ExitCode:
        """graceful's hooks LIFO, then aiohttp's on_cleanup and cleanup_ctx, each bounded."""
        started = time.perf_counter()
        app = self._started.app

        def left() -> float:
            return self._budget().left(self._budget().hooks_until)

        failures = await hooks.run_hooks(app, [*hooks.app_hooks(app), *self._hooks],
                                         self._config.hook_timeout, left)
        # aiohttp's on_cleanup, each handler and each cleanup_ctx entry with its own timeout
        failures += await hooks.run_steps(hooks.cleanup_steps(app), self._config.hook_timeout,
                                          left)
        log.info("hooks.done", failed=[f.name for f in failures],
                 took_s=round(time.perf_counter() - started, 4))
        if failures:
            self._notify("hooks_failed", [f.name for f in failures])
        return ExitCode.HOOK_FAILED if failures else ExitCode.OK

    async def checkpoint(self) -> ExitCode:
        """The state flushed atomically, in the time reserved for it."""
        return await self._flusher.final(self._budget().checkpoint_budget)

    def _on_drain_progress(self, in_flight: int, left: float) -> None:
        log.info("drain.progress", in_flight=in_flight, time_left_s=round(left, 3))
        self._notify("drain_progress", in_flight, self._budget().time_left)


def budget_of(phase: str, budget: StopBudget) -> float:
    """The seconds `phase` may take, from the stop budget as it is now."""
    until: dict[str, Any] = {"pre_stop": budget.accept_until, "stop_accepting": budget.drain_until,
                             "drain": budget.drain_until, "cancel": budget.cancel_until,
                             "hooks": budget.hooks_until}
    if phase == "checkpoint":
        return budget.checkpoint_budget
    return budget.left(until[phase])
