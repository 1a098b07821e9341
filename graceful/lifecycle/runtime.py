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
      7. exit         the exit code is the worst of the phases' (cli/runner then wait for
                      the threads, bounded)
    second stop: skip to 4 at once; third stop: best-effort checkpoint, return at once.

Each phase is one call (graceful/lifecycle/phases.py) that takes its time from the one stop budget
(graceful/lifecycle/deadline.py), returns its exit code, and is logged as `phase.started` and
`phase.finished` with its budget and the time it took. The start is graceful/lifecycle/startup.py;
how repeated stop requests escalate is graceful/lifecycle/escalation.py.

Not covered: background tasks the application starts itself (stop them in a hook or a
cleanup_ctx); a handler that blocks the loop without awaiting cannot be cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from graceful.bridge import Handover
from graceful.bridge.controls import PauseAction, PauseRequest
from graceful.bridge.stop import StopLevel, StopObserver, StopRequest, StopSource
from graceful.config import Config
from graceful.errors import ExitCode, GracefulError, StartupError, worst
from graceful.http.sockets import format_address
from graceful.lifecycle import hooks, loader
from graceful.lifecycle.deadline import StopBudget
from graceful.lifecycle.escalation import REPEAT_IGNORED_S, Escalation
from graceful.lifecycle.flushing import Flusher
from graceful.lifecycle.pause import Pauser
from graceful.lifecycle.phases import StopPhases, budget_of
from graceful.lifecycle.runtime_view import Phase, RuntimeView
from graceful.lifecycle.startup import Builder, Started
from graceful.logs import get_logger

if TYPE_CHECKING:
    from graceful.lifecycle.worker_link import Takeover

__all__ = ["REPEAT_IGNORED_S", "Phase", "Runtime"]

log = get_logger()


class Runtime(RuntimeView):
    """Serves one aiohttp application and stops it without losing requests or state.

    `async with Runtime(app_or_factory, config) as runtime:` starts it (listeners bound,
    READY); `await runtime.wait_stopped()` returns the exit code once a stop has run.
    `runtime.stop(reason)` asks for a stop from any thread; stop sources (signals, console
    events, the SCM) call `request_stop` on the loop through a bridge.
    """

    def __init__(self, app: loader.AppSource, config: Config | None = None, *,
                 observers: Iterable[StopObserver] = (), takeover: Takeover | None = None,
                 **options: Any) -> None:
        self.config = (config or Config()).replace(**options)
        self._observers = list(observers)
        self._hooks: list[hooks.ShutdownHook] = []
        self.phase = Phase.STARTING
        # takeover: we are a worker of graceful serve's supervisor (lifecycle/worker_link.py)
        self._builder = Builder(app, self.config, is_ready=self._is_ready,
                                phase=lambda: str(self.phase), takeover=takeover)
        self._takeover = takeover
        self._started: Started | None = None  # the record of a start that succeeded
        self._flusher = Flusher(None, None)
        self._escalation = Escalation()
        self._early = Handover()  # stop() before start(): kept like a signal before the loop
        self._budget: StopBudget | None = None
        self._main: asyncio.Task[ExitCode] | None = None
        self._startup: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._force = asyncio.Event()
        self._abandoned: asyncio.Future[ExitCode] | None = None
        self._metrics: Any = None
        if self.config.metrics_bind is not None:  # prometheus_client imported only then
            from graceful.metrics.endpoint import Metrics
            shared_folder = None
            if takeover is not None:  # a supervisor's worker: it answers for the service
                from graceful.supervisor.metrics_folder import ENV

                shared_folder = os.environ.get(ENV)
            self._metrics = Metrics(self, self.config.metrics_bind,
                                    default_registry=self.config.metrics_default_registry,
                                    shared_folder=shared_folder)
            self._observers.append(self._metrics)
        self._pauser: Pauser | None = None

    # -- public API (what it shows: runtime_view.py) --------------------------------------

    def add_hook(self, func: hooks.Hook, *, name: str | None = None,
                 timeout: float | None = None) -> hooks.Hook:
        """Run `func(app)` at stop after the drain; hooks run LIFO, each bounded."""
        self._hooks.append(hooks.ShutdownHook(func, name or hooks._name_of(func), timeout))
        return func

    def stop(self, reason: str = "", source: StopSource = StopSource.API) -> None:
        """Ask for a stop; safe from any thread. Called again, it forces, then abandons.
        Before `start()` it is kept, and the start is abandoned (as for an early signal)."""
        self._early(StopRequest(source, reason))

    def pause(self, source: str = "API") -> None:
        """Stop accepting and drain, keeping the process and its state (lifecycle/pause.py);
        safe from any thread. Ignored unless READY."""
        self._early(PauseRequest(PauseAction.PAUSE, source))  # type: ignore[arg-type]

    def resume(self, source: str = "API") -> None:
        """Accept again after `pause()`; safe from any thread."""
        self._early(PauseRequest(PauseAction.RESUME, source))  # type: ignore[arg-type]

    async def start(self) -> None:
        """Start serving; returns once READY. Raises what made the start fail."""
        loop = asyncio.get_running_loop()
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
        the third abandons (graceful/lifecycle/escalation.py). A PauseRequest from the same bridges
        goes to the pauser."""
        if isinstance(request, PauseRequest):
            if self._pauser is None or self.phase not in (Phase.READY, Phase.PAUSING,
                                                          Phase.PAUSED):
                log.info(f"{request.action}.ignored", phase=str(self.phase))
            else:
                self._pauser.handle(request, str(self.phase))
            return
        level = self._escalation.accept(request, str(self.phase))
        if level is not None:
            self._notify("stop_requested", str(request.source), level.name.lower())
        if level is None or self.phase is Phase.STOPPED:
            return
        if self.phase is Phase.STARTING:
            self._stop_requested.set()
            if self._startup is not None and not self._builder.committed:
                self._startup.cancel()  # (once committed, the stop begins as it serves)
        elif level is StopLevel.GRACEFUL:
            self._begin_stop()
        elif level is StopLevel.FORCE:
            assert self._budget is not None
            self._budget = self._budget.force(request.at)
            self._force.set()
        else:
            assert self._budget is not None
            self._budget = self._budget.abandon(request.at)
            self._abandon()

    # -- the lifecycle ---------------------------------------------------------------------

    async def _lifecycle(self) -> ExitCode:
        if self._stop_requested.is_set():  # stopped before the start began
            log.info("start.abandoned", reason="stop requested before the start")
            return self._finish(ExitCode.OK)
        self._startup = asyncio.create_task(self._start(), name="graceful.lifecycle.startup")
        try:
            await self._startup
        except asyncio.CancelledError:
            if not self._stop_requested.is_set():
                raise
            log.info("start.abandoned", reason="stop requested while starting")
            await self._undo_start()
            return self._finish(ExitCode.OK)
        except StartupError as err:
            log.error("startup.failed", error=str(err), exc_info=err.__cause__)
            await self._undo_start()
            raise
        except GracefulError:
            await self._undo_start()
            raise
        except Exception as err:
            log.error("startup.failed", error=repr(err), exc_info=err)
            await self._undo_start()
            raise StartupError(f"the application failed to start: {err!r}") from err
        if self._stop_requested.is_set() and self._budget is None:
            self._begin_stop()  # the stop came as the start finished, too late to cancel it
        await self._stop_requested.wait()
        return await self._shutdown()

    async def _start(self) -> None:
        metrics_socket = self._builder.inherit()  # a supervisor's, shared by its workers
        if self._metrics is not None and metrics_socket is None:
            self._metrics.bind()  # before the app is built: a busy port is exit 2
        self._started = started = await self._builder.build()
        if self._metrics is not None and metrics_socket is not None:
            # a worker answers scrapes once it serves: never one still starting beside
            # the workers that serve (a restart)
            self._metrics.bind(metrics_socket)
        if started.checkpointer is not None and started.checkpointer.restored is not None:
            snapshot = started.checkpointer.restored
            self._notify("checkpoint_flushed", snapshot.generation, None,
                         time.time() - snapshot.age_s())
        self.phase = Phase.READY
        self._flusher = Flusher(started.checkpointer, self.config.checkpoint_interval,
                                on_flushed=self._flushed)
        self._flusher.start()
        self._observers.append(started.checks)  # retries failing optional checks till the stop
        self._pauser = Pauser(started.listeners, started.tracker, self.config, app=started.app,
                              set_phase=lambda name: setattr(self, "phase", Phase(name)),
                              notify=self._notify)
        # its observers first: once the line is out, a scrape, systemd and the supervisor
        # see a server that serves
        self._notify("ready")
        first = started.listeners[0].address
        host, port = first if isinstance(first, tuple) else (format_address(first), None)
        log.info("server.started", host=host, port=port,
                 loop=type(asyncio.get_running_loop()).__module__, pid=os.getpid(),
                 addresses=[format_address(a) for a in self.addresses])
        self._ready.set()

    def _is_ready(self) -> bool:
        """Readiness is the service's: at a restart new workers serve the same sockets,
        so a worker that drains for one (what its accept queue held) still says ready; a
        load balancer must not take the service out of rotation for a restart."""
        requests = self._escalation.requests
        return self.phase is Phase.READY or (
            self.phase is Phase.DRAINING and len(requests) == 1
            and requests[0].source == StopSource.RESTART)

    async def _undo_start(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
        await self._builder.undo()
        self.phase = Phase.STOPPED

    def _begin_stop(self) -> None:
        if self._pauser is not None:
            self._pauser.cancel()  # a pause's drain or resume: the stop takes over
        self.phase = Phase.DRAINING  # readiness answers 503 from this instant
        # anchored at the request's own timestamp, on the one clock (time.monotonic)
        first = self._escalation.first
        config = self.config
        if first.source == StopSource.RESTART:
            # new workers serve the same sockets already: nothing to deregister from
            config = config.replace(pre_stop_delay=0.0)
            if self._takeover is not None and self._started is not None:
                # our idle keep-alive connections go to them rather than closed
                self._started.tracker.hand_off = self._takeover.hand_off()
        self._budget = StopBudget.starting_at(first.at, config)
        assert self._started is not None
        self._started.tracker.begin_stopping()
        self._stop_requested.set()

    async def _shutdown(self) -> ExitCode:
        assert self._started is not None
        stop = StopPhases(self._started, self.config, budget=self._current_budget,
                          force=self._force, hooks=self._hooks, flusher=self._flusher,
                          forced=lambda: self._escalation.forced, notify=self._notify,
                          kind="restart" if self._escalation.first.source == StopSource.RESTART
                          else "stop")
        codes = [
            # 1. pre_stop: keep serving, with Connection: close, while we are deregistered
            await self._phase("pre_stop", stop.pre_stop),
            # 2. stop_accepting: refuse new connections, serve the ones already queued
            await self._phase("stop_accepting", stop.stop_accepting, notify=False),
            # 3. drain: aiohttp's on_shutdown, websockets 1001, wait for in-flight requests
            await self._phase("drain", stop.drain),
        ]
        # 4. cancel: handlers still running at the deadline
        if not stop.drained:
            codes.append(await self._phase("cancel", stop.cancel))
        # 5. hooks: ours LIFO, then aiohttp's on_cleanup and cleanup_ctx
        codes.append(await self._phase("hooks", stop.hooks))
        # 6. checkpoint: its reserved budget
        codes.append(await self._phase("checkpoint", stop.checkpoint))
        # 7. exit: the worst code of the phases
        return self._finish(worst(*codes))

    def _abandon(self) -> None:
        """Third stop: write what we can now, on the loop, and report at once."""
        code = self._flusher.abandon(self.config.checkpoint_timeout)
        if self._started is not None:
            self._started.tracker.abort_all()
        if self._abandoned is not None and not self._abandoned.done():
            self._abandoned.set_result(self._finish(code))

    # -- helpers ---------------------------------------------------------------------------

    async def _phase(self, name: str, run: Callable[[], Awaitable[ExitCode]], *,
                     notify: bool = True) -> ExitCode:
        budget = self._current_budget()
        if notify:
            self._notify("phase", name, budget.time_left)
        budget_s = round(budget_of(name, budget), 3)
        log.debug("phase.started", phase=name, budget_s=budget_s)
        started = time.perf_counter()
        code = await run()
        log.info("phase.finished", phase=name, budget_s=budget_s,
                 took_s=round(time.perf_counter() - started, 4), code=int(code))
        return code

    def _current_budget(self) -> StopBudget:
        assert self._budget is not None
        return self._budget

    def _finish(self, code: ExitCode) -> ExitCode:
        self.phase = Phase.STOPPED
        if self._started is not None:
            self._started.tracker.stop_done()
        self._builder.heap.release()
        self._notify("stopped", int(code))
        return code

    def _flushed(self, result: Any) -> None:
        self._notify("checkpoint_flushed", result.generation, result.took_ms / 1e3, time.time())

    def _notify(self, method: str, *args: Any) -> None:
        for observer in self._observers:
            call = getattr(observer, method, None)  # a duck-typed observer may lack newer ones
            if call is None:
                continue
            try:
                call(*args)
            except Exception as err:  # an observer must not break the stop
                log.error("observer.failed", observer=repr(observer), error=repr(err))
