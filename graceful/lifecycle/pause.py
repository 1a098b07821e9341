"""Pause and continue: stop serving for a while without stopping the process.

A pause (SIGUSR1, the SCM's PAUSE control, `runtime.pause()`):
  1. readiness turns 503 ("pausing", then "paused");
  2. the listeners stop accepting; connections already in the accept queue are served;
  3. in-flight requests drain as at a stop (Connection: close, quiet idle connections
     closed, websockets get 1001, `graceful.stopping(request)` fires with kind "pause") for
     --drain-timeout; what still runs then is cancelled with --cancel-grace, and counted
     (`pause.deadline`);
  4. PAUSED: the process, its state, its hooks, its checkpoint and its background work all
     stay; nothing of the stop's on_shutdown/hooks/checkpoint phases runs.
A continue (SIGUSR2, the SCM's CONTINUE control, `runtime.resume()`) accepts again and
turns readiness back on, and clears the requests' notice of the pause. A continue while the
pause still drains ends the pause at once.

While paused (POSIX) the listening sockets stay open (a duplicate descriptor keeps each listening,
as at a stop): a new connection completes its handshake and waits in the kernel's accept
queue, up to --backlog, and is served on continue; past the backlog the kernel drops or
refuses it. Closing the sockets would refuse clients outright but risk losing the port to
another process (or, with --port 0, to anyone) before the continue: a paused service must
be able to continue on the same address. On Windows the Proactor loop (one process with
--loop asyncio) cannot serve a listening socket again once it has stopped serving it, so
the sockets are closed at the pause (new connections are refused) and bound again at the
continue; if the port was taken meanwhile the continue fails (`resume.failed`) and the
server stays paused. winloop and a worker's selector loop keep them listening, as on POSIX.

A stop while paused or pausing is a normal stop: its drain takes over (the connections
queued while paused are served), then hooks and checkpoint run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from aiohttp import web

from graceful.bridge.controls import PauseAction, PauseRequest
from graceful.config import Config
from graceful.http import stopnotice, websockets
from graceful.http.drain import ConnectionTracker
from graceful.http.listeners import Listener
from graceful.logs import get_logger

log = get_logger()


class Pauser:
    """Pauses and resumes one serving runtime, on the loop thread. `set_phase` receives
    "pausing", "paused" and "ready"; `notify(name)` tells the observers ("paused",
    "resumed", "resume_failed")."""

    def __init__(self, listeners: Sequence[Listener], tracker: ConnectionTracker,
                 config: Config, *, app: web.Application, set_phase: Callable[[str], None],
                 notify: Callable[..., None]) -> None:
        self._listeners, self._tracker, self._config = listeners, tracker, config
        self._app = app
        self._set_phase, self._notify = set_phase, notify
        self._pausing: asyncio.Task[None] | None = None
        self._resuming: asyncio.Task[None] | None = None
        self.paused = False

    def handle(self, request: PauseRequest, phase: str) -> None:
        """A request arriving in runtime phase `phase` ("ready", "paused", ...)."""
        log.info(f"{request.action}.requested", source=request.source, phase=phase)
        if request.action is PauseAction.PAUSE:
            if phase != "ready":
                log.info("pause.ignored", phase=phase)
                if phase == "paused":  # said again: whoever waits for it hears it
                    self._notify("paused")
                return
            self.paused = True
            self._set_phase("pausing")
            self._pausing = asyncio.ensure_future(self._pause())
        elif not self.paused or phase not in ("pausing", "paused"):
            log.info("resume.ignored", phase=phase)
            if phase == "ready":  # already accepting (its resume succeeded earlier)
                self._notify("resumed")
        else:
            self._resuming = asyncio.ensure_future(self._resume())

    def cancel(self) -> None:
        """A stop takes over: the pause's drain ends here, the stop's goes on."""
        for task in (self._pausing, self._resuming):
            if task is not None:
                task.cancel()

    async def _pause(self) -> None:
        started = time.perf_counter()
        queued = sum([await listener.pause() for listener in self._listeners])
        log.info("listeners.paused", queued_connections=queued,
                 took_s=round(time.perf_counter() - started, 4))
        self._tracker.begin_stopping()
        began = time.monotonic()
        deadline = began + self._config.drain_timeout
        # streams end cleanly, as at a stop, rather than being cut at the deadline
        stopnotice.fire(self._app, "pause", began=began, drain_until=deadline)
        self._tracker.close_websockets(websockets.WebSocketClose(
            reason=self._config.websocket_close_reason,
            timeout=self._config.websocket_close_timeout))  # 1001, as at a stop
        drained = await self._tracker.drain(deadline, asyncio.Event(), self._progress)
        cancelled = []
        if not drained:
            cancelled = await self._tracker.cancel_in_flight(self._config.cancel_grace)
            log.warning("pause.deadline", cancelled=len(cancelled),
                        requests=[{"method": c.method, "path": c.path, "age_s": c.age_s}
                                  for c in cancelled])
        self._tracker.stop_closing_websockets()
        self._tracker.end_stopping()
        self._set_phase("paused")
        log.info("pause.done", queued_connections=queued, cancelled=len(cancelled),
                 took_s=round(time.perf_counter() - started, 4))
        self._notify("paused")

    async def _resume(self) -> None:
        if self._pausing is not None and not self._pausing.done():
            self._pausing.cancel()  # a continue during the pause's drain ends the pause
            await asyncio.wait([self._pausing])
            self._tracker.stop_closing_websockets()
            self._tracker.end_stopping()
        stopnotice.pause_over(self._app)
        started = time.perf_counter()
        try:
            for listener in self._listeners:
                await listener.resume(self._config.backlog)
        except OSError as err:  # Windows binds again, and the port may have been taken
            log.error("resume.failed", error=str(err))
            self._set_phase("paused")
            self._notify("resume_failed", str(err))
            return
        self.paused = False
        self._set_phase("ready")
        log.info("resume.done", took_s=round(time.perf_counter() - started, 4))
        self._notify("resumed")

    def _progress(self, in_flight: int, left: float) -> None:
        log.info("pause.progress", in_flight=in_flight, time_left_s=round(left, 3))
