"""The lifecycle, phase by phase: the one place that orders them.

    start: restore checkpoint, build app, health probes, on_startup, bind  -> READY
    stop request (first):  readiness 503, Connection: close on every response
      1. pre_stop     keep accepting for --pre-stop-delay (load balancers deregister us)
      2. stop_accepting  close the listeners; connections queued in the kernel are served
      3. drain        on_shutdown, then 1001 to the websockets it left open; quiet idle
                      connections closed; wait for every in-flight request until the deadline
      4. cancel       handlers still running are cancelled, given --cancel-grace, logged
      5. hooks        graceful hooks LIFO, then aiohttp's on_cleanup/cleanup_ctx, each bounded
      6. checkpoint   the state is flushed atomically, in time reserved for it
    second stop: skip to 4 at once; third stop: best-effort checkpoint, return at once.

Not covered: background tasks the application starts itself (stop them in a hook or a
cleanup_ctx); a handler that blocks the loop without awaiting cannot be cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from graceful import appstate, health, heap, hooks, loader
from graceful import checkpoint as ckpt
from graceful.access import AccessLogger
from graceful.bridge import Handover
from graceful.config import Config
from graceful.deadline import StopBudget
from graceful.drain import ConnectionTracker
from graceful.errors import (
    CheckpointError,
    ConfigError,
    ExitCode,
    GracefulError,
    StartupError,
    worst,
)
from graceful.listeners import Listener, bind_all, format_address
from graceful.logs import get_logger
from graceful.protocol import DrainingRequestHandler, handler_options
from graceful.stop import StopLevel, StopObserver, StopRequest, StopSource

log = get_logger()

REPEAT_IGNORED_S = 0.5
KEEPALIVE_TIMEOUT_S = 75.0  # web.run_app's (RequestHandler's own is 3630)


class Phase(enum.StrEnum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"


class Runtime:
    """Serves one aiohttp application and stops it without losing requests or state.

    `async with Runtime(app_or_factory, config) as runtime:` starts it (listeners bound,
    READY); `await runtime.wait_stopped()` returns the exit code once a stop has run.
    `runtime.stop(reason)` asks for a stop from any thread; stop sources (signals, console
    events, the SCM) call `request_stop` on the loop through a bridge.
    """

    def __init__(self, app: loader.AppSource, config: Config | None = None, *,
                 observers: Iterable[StopObserver] = (), **options: Any) -> None:
        self.config = (config or Config()).replace(**options)
        self._source = app
        self._observers = list(observers)
        self._hooks: list[hooks.ShutdownHook] = []
        self.phase = Phase.STARTING
        self.app: web.Application | None = None
        self.state: dict[str, Any] = {}
        self.listeners: list[Listener] = []
        self._sockets: list[socket.socket] = []  # bound, not yet listening
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tracker: ConnectionTracker | None = None
        self._runner: web.AppRunner | None = None
        self._checkpointer: ckpt.Checkpointer | None = None
        self._stops: list[StopRequest] = []
        self._early = Handover()  # stop() before start(): kept like a signal before the loop
        self._budget: StopBudget | None = None
        self._main: asyncio.Task[ExitCode] | None = None
        self._startup: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self._abandoned: asyncio.Future[ExitCode] | None = None
        self._periodic: asyncio.Task[None] | None = None
        self._codes: list[ExitCode] = []
        self._heap = heap.Heap()

    # -- public API ------------------------------------------------------------------------

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [listener.address for listener in self.listeners]

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    @property
    def stop_time_left(self) -> float:
        """Seconds left of the stop budget: 0 before a stop, and after a third one."""
        if self._abandoned is not None and self._abandoned.done():
            return 0.0
        return self._time_left()

    def add_hook(self, func: hooks.Hook, *, name: str | None = None,
                 timeout: float | None = None) -> hooks.Hook:
        """Run `func(app)` at stop after the drain; hooks run LIFO, each bounded."""
        self._hooks.append(hooks.ShutdownHook(func, name or hooks._name_of(func), timeout))
        return func

    def stop(self, reason: str = "", source: StopSource = StopSource.API) -> None:
        """Ask for a stop; safe from any thread. Called again, it forces, then abandons.
        Before `start()` it is kept, and the start is abandoned (as for an early signal)."""
        self._early(StopRequest(source, reason))

    async def start(self) -> None:
        """Start serving; returns once READY. Raises what made the start fail."""
        self._loop = loop = asyncio.get_running_loop()
        self._abandoned = loop.create_future()

        def deliver(request: StopRequest) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to stop
                loop.call_soon_threadsafe(self.request_stop, request)

        self._early.connect(deliver)
        self._main = asyncio.create_task(self._lifecycle(), name="graceful.lifecycle")
        ready = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait([self._main, ready], return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self._main.done():
            self._main.result()  # raises a startup error; else a stop came during the start

    async def wait_stopped(self) -> ExitCode:
        """Wait for the stop to finish and return the exit code."""
        assert self._main is not None and self._abandoned is not None, "start() first"
        await asyncio.wait([self._main, self._abandoned], return_when=asyncio.FIRST_COMPLETED)
        if self._abandoned.done():
            return self._abandoned.result()
        return self._main.result()

    async def __aenter__(self) -> Runtime:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._main is not None and not self._main.done():
            if not self._stop_requested.is_set():
                self.request_stop(StopRequest(StopSource.API, "context exit"))
            await self.wait_stopped()

    def request_stop(self, request: StopRequest) -> None:
        """Handle a stop request on the loop thread: the first drains, the second forces,
        the third abandons. A repeat within REPEAT_IGNORED_S of the last one that counted
        is logged and ignored: one Ctrl+C can reach us twice (the terminal signals the
        whole process group and a wrapper forwards it), and a script may send a burst."""
        if self._stops and request.at - self._stops[-1].at < REPEAT_IGNORED_S:
            log.info("stop.repeated", source=str(request.source), ignored=True)
            return
        self._stops.append(request)
        level = StopLevel(min(len(self._stops), StopLevel.ABANDON))
        log.info("stop.requested", source=str(request.source), reason=request.reason,
                 mode=level.name.lower(), attempt=len(self._stops), phase=str(self.phase))
        if self.phase is Phase.STOPPED:
            return
        if self.phase is Phase.STARTING:
            self._stop_requested.set()
            if self._startup is not None:
                self._startup.cancel()
            return
        if level is StopLevel.GRACEFUL:
            self._begin_stop()
        elif level is StopLevel.FORCE:
            assert self._budget is not None
            self._budget.force(self._now(), self.config)
            self._force.set()
        else:
            self._abandon()

    # -- start -----------------------------------------------------------------------------

    async def _lifecycle(self) -> ExitCode:
        if self._stop_requested.is_set():  # stopped before the start began
            log.info("start.abandoned", reason="stop requested before the start")
            return self._finish(ExitCode.OK)
        self._startup = asyncio.create_task(self._start_steps(), name="graceful.startup")
        try:
            await self._startup
        except asyncio.CancelledError:
            if not self._stop_requested.is_set():
                raise
            log.info("start.abandoned", reason="stop requested while starting")
            await self._cleanup_after_failed_start()
            return self._finish(ExitCode.OK)
        except StartupError as err:
            log.error("startup.failed", error=str(err), exc_info=err.__cause__)
            await self._cleanup_after_failed_start()
            raise
        except GracefulError:
            await self._cleanup_after_failed_start()
            raise
        except Exception as err:
            log.error("startup.failed", error=repr(err), exc_info=err)
            await self._cleanup_after_failed_start()
            raise StartupError(f"the application failed to start: {err!r}") from err
        if self._stop_requested.is_set() and self._budget is None:
            self._begin_stop()  # the stop came as the start finished, too late to cancel it
        await self._stop_requested.wait()
        return await self._shutdown()

    async def _start_steps(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        # Bind first: a port in use or a host that does not resolve is a configuration
        # error (exit 2) before the app's factory and on_startup run.
        self._sockets = bind_all(config.host, config.port)
        restored: dict[str, Any] = {}
        if config.checkpoint is not None:
            # probe the folder, take the lock, then read: refused now rather than at the stop
            self._checkpointer = checkpointer = ckpt.Checkpointer.open(config.checkpoint)
            if checkpointer.fallback is not None:
                log.warning("checkpoint.fallback", error=str(checkpointer.fallback))
            if (snapshot := checkpointer.restored) is not None:
                restored = snapshot.state
                log.info("checkpoint.restored", path=str(snapshot.path),
                         generation=snapshot.generation, age_s=round(snapshot.age_s(), 3),
                         keys=len(restored))
        app = await loader.build_app(self._source)
        if app.on_startup.frozen:  # not self.app: its cleanup ran when it was last served
            raise ConfigError("this Application has been served already, and aiohttp ties an "
                              "Application to the one loop that served it: to serve again, "
                              "pass a factory that builds a new Application")
        self.app = app
        # the app's own dict is kept, the restored keys merged into it (graceful/appstate.py)
        self.state = appstate.adopt(app, restored)
        if self._checkpointer is not None:
            self._checkpointer.state = self.state
            self._log_invalid(self._checkpointer.check())
        probes = health.Health(config.livez_path, config.readyz_path,
                               is_ready=lambda: self.phase is Phase.READY,
                               phase=lambda: str(self.phase)) if config.health else None
        if probes is not None:
            probes.refuse_taken_paths(app)
        self._tracker = tracker = ConnectionTracker(loop)
        access = {"access_log_class": AccessLogger} if config.access_log else {"access_log": None}
        hooks.bound_startup(app, config.startup_timeout)
        # run_app's keep-alive default; the app's handler_args still win, as under run_app
        self._runner = web.AppRunner(app, handle_signals=False,
                                     keepalive_timeout=KEEPALIVE_TIMEOUT_S, **access)
        await self._runner.setup()  # on_startup and cleanup_ctx run here
        server = self._runner.server
        assert server is not None
        options = handler_options(server)  # the runner's, the app's debug and handler_args
        if probes is not None:
            options["request_handler"] = probes.in_front_of(server.request_handler)

        def factory() -> DrainingRequestHandler:
            return DrainingRequestHandler(server, tracker=tracker, loop=loop, **options)

        sockets, self._sockets = self._sockets, []
        self.listeners += [Listener(sock, factory) for sock in sockets]
        self._heap.settle()  # no full collection walks the startup heap under load
        for listener in self.listeners:
            await listener.start(config.backlog)
        self.phase = Phase.READY
        host, port = self.listeners[0].address
        log.info("server.started", host=host, port=port, loop=type(loop).__module__,
                 pid=os.getpid(), addresses=[format_address(a) for a in self.addresses])
        if self._checkpointer is not None and config.checkpoint_interval:
            self._periodic = asyncio.create_task(self._flush_periodically())
        self._notify("ready")
        self._ready.set()

    async def _cleanup_after_failed_start(self) -> None:
        for sock in self._sockets:
            sock.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        for listener in self.listeners:
            await listener.close()
        if self._tracker is not None:
            self._tracker.abort_all()
        if self.app is not None and self.app.on_startup.frozen:
            await hooks.run_steps(hooks.cleanup_steps(self.app), self.config.hook_timeout,
                                  lambda: self.config.hook_timeout)
        self.phase = Phase.STOPPED
        self._heap.release()

    # -- stop ------------------------------------------------------------------------------

    def _begin_stop(self) -> None:
        self.phase = Phase.DRAINING  # readiness answers 503 from this instant
        self._budget = StopBudget.starting_at(self._now(), self.config)
        assert self._tracker is not None
        self._tracker.begin_stopping()
        self._stop_requested.set()

    async def _shutdown(self) -> ExitCode:
        budget, tracker, app = self._budget, self._tracker, self.app
        assert budget is not None and tracker is not None and app is not None
        # 1. pre_stop: keep serving, with Connection: close, while we are deregistered
        await self._phase("pre_stop", self._sleep_until(budget.accept_until))
        # 2. stop_accepting: refuse new connections, serve the ones already queued
        started = time.perf_counter()
        queued = sum([await listener.close() for listener in self.listeners])
        log.info("listeners.closed", queued_connections=queued,
                 took_s=round(time.perf_counter() - started, 4))
        # 3. drain: aiohttp's on_shutdown, websockets 1001, wait for in-flight requests
        drained = await self._phase("drain", self._drain(app, tracker, budget))
        # 4. cancel: handlers still running at the deadline
        if not drained:
            self._codes.append(await self._phase("cancel", self._cancel(tracker, budget)))
        # 5. hooks: ours LIFO, then aiohttp's on_cleanup and cleanup_ctx
        await self._phase("hooks", self._run_hooks(app, budget))
        # 6. checkpoint: its reserved budget
        await self._phase("checkpoint", self._final_flush(budget))
        return self._finish(worst(*self._codes))

    async def _drain(self, app: web.Application, tracker: ConnectionTracker,
                     budget: StopBudget) -> bool:
        started = time.perf_counter()
        on_shutdown = asyncio.ensure_future(self._on_shutdown(app, tracker, budget))
        drained = await tracker.drain(budget.drain_until, self._force, self._on_drain_progress)
        if await on_shutdown:
            self._codes.append(ExitCode.HOOK_FAILED)
        tracker.stop_closing_websockets()
        if drained:
            log.info("drain.done", took_s=round(time.perf_counter() - started, 4))
        return drained

    async def _on_shutdown(self, app: web.Application, tracker: ConnectionTracker,
                           budget: StopBudget) -> list[hooks.HookFailure]:
        """aiohttp's on_shutdown, each handler bounded; then 1001 to the websockets it left
        open. Not at once: aiohttp's recipe has on_shutdown say goodbye to its websockets
        and close them itself, and our close would cut that goodbye (issue 16)."""
        failures = await hooks.run_steps(
            hooks.signal_steps(app, app.on_shutdown), self.config.hook_timeout,
            lambda: max(budget.drain_until - self._now(), 0))
        tracker.close_websockets()
        return failures

    async def _cancel(self, tracker: ConnectionTracker, budget: StopBudget) -> ExitCode:
        grace = max(budget.cancel_until - self._now(), 0)
        remaining = len(tracker.requests_in_flight())
        cancelled = await tracker.cancel_in_flight(grace)
        forced = len(self._stops) > 1
        log.warning("drain.deadline", cancelled=len(cancelled), forced=forced,
                    open_connections=len(tracker.connections) if remaining == 0 else None,
                    requests=[{"method": c.method, "path": c.path, "age_s": c.age_s,
                               "unwound": c.unwound} for c in cancelled])
        return ExitCode.DRAIN_DEADLINE if cancelled else ExitCode.OK

    async def _run_hooks(self, app: web.Application, budget: StopBudget) -> None:
        started = time.perf_counter()

        def left() -> float:
            return max(budget.hooks_until - self._now(), 0)

        failures = await hooks.run_hooks(app, [*hooks.app_hooks(app), *self._hooks],
                                         self.config.hook_timeout, left)
        # aiohttp's on_cleanup, each handler and each cleanup_ctx entry with its own timeout
        failures += await hooks.run_steps(hooks.cleanup_steps(app), self.config.hook_timeout,
                                          left)
        if failures:
            self._codes.append(ExitCode.HOOK_FAILED)
        log.info("hooks.done", failed=[f.name for f in failures],
                 took_s=round(time.perf_counter() - started, 4))

    async def _final_flush(self, budget: StopBudget) -> None:
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
        if self._checkpointer is None or self._checkpointer.closed:  # closed: abandoned
            return
        timeout = max(budget.final - self._now(), self.config.checkpoint_timeout)
        try:
            async with asyncio.timeout(timeout):
                # waits for a periodic write still in progress on the writer thread first
                result = await self._checkpointer.flush()
        except (CheckpointError, TimeoutError) as err:
            log.error("checkpoint.failed", path=str(self._checkpointer.path),
                      error=str(err) or f"timed out after {timeout:.3g}s")
            self._codes.append(ExitCode.CHECKPOINT_FAILED)
            return
        finally:
            self._checkpointer.close()
        self._log_invalid(result.invalid, final=True)
        if result.invalid:  # the good keys are written; the bad ones' new values are lost
            self._codes.append(ExitCode.CHECKPOINT_FAILED)
        log.info("checkpoint.flushed", path=str(self._checkpointer.path),
                 generation=result.generation, bytes=result.bytes, took_ms=round(result.took_ms, 2))

    def _abandon(self) -> None:
        """Third stop: write what we can now, on the loop, and report at once."""
        code = ExitCode.DRAIN_DEADLINE
        if self._checkpointer is not None:
            try:
                result = self._checkpointer.flush_now(self.config.checkpoint_timeout)
                self._log_invalid(result.invalid, final=True)
                log.info("checkpoint.flushed", path=str(self._checkpointer.path),
                         generation=result.generation, bytes=result.bytes,
                         took_ms=round(result.took_ms, 2), abandoned=True)
                if result.invalid:
                    code = ExitCode.CHECKPOINT_FAILED
            except CheckpointError as err:
                log.error("checkpoint.failed", error=str(err), abandoned=True)
                code = ExitCode.CHECKPOINT_FAILED
            self._checkpointer.close()
        if self._tracker is not None:
            self._tracker.abort_all()
        if self._abandoned is not None and not self._abandoned.done():
            self._abandoned.set_result(self._finish(code))

    async def _flush_periodically(self) -> None:
        assert self._checkpointer is not None and self.config.checkpoint_interval
        while True:
            await asyncio.sleep(self.config.checkpoint_interval)
            if self._checkpointer.closed:  # the third stop wrote it and left
                return
            try:
                result = await self._checkpointer.flush(only_if_changed=True)
            except CheckpointError as err:
                log.error("checkpoint.failed", error=str(err), periodic=True)
                continue
            self._log_invalid(result.fresh)
            if result.written:
                log.debug("checkpoint.flushed", generation=result.generation,
                          bytes=result.bytes, took_ms=round(result.took_ms, 2), periodic=True)

    def _log_invalid(self, problems: Iterable[ckpt.Problem], *, final: bool = False) -> None:
        """A value the file cannot keep: named while it can still be fixed."""
        for problem in problems:
            log.warning("checkpoint.invalid", path=problem.path, error=problem.error,
                        final=final)

    # -- helpers ---------------------------------------------------------------------------

    async def _phase(self, name: str, work: Any) -> Any:
        self._notify("phase", name, self._time_left())
        return await work

    async def _sleep_until(self, when: float) -> None:
        delay = when - self._now()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._force.wait()

    def _on_drain_progress(self, in_flight: int, left: float) -> None:
        log.info("drain.progress", in_flight=in_flight, time_left_s=round(left, 3))
        self._notify("drain_progress", in_flight, self._time_left())

    def _finish(self, code: ExitCode) -> ExitCode:
        self.phase = Phase.STOPPED
        self._heap.release()
        self._notify("stopped", int(code))
        return code

    def _time_left(self) -> float:
        return max(self._budget.final - self._now(), 0) if self._budget else 0.0

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _notify(self, method: str, *args: Any) -> None:
        for observer in self._observers:
            try:
                getattr(observer, method)(*args)
            except Exception as err:  # an observer must not break the stop
                log.error("observer.failed", observer=repr(observer), error=repr(err))
