"""The start: what it builds, in order, and the one record of what was built.

Bind first (a port in use is a configuration error before the app's code runs), then the
checkpoint (folder probed, lock taken, state read), the app, its health probes, aiohttp's
on_startup, and the listeners. A start that fails or is cancelled is undone by `undo`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from graceful.config import Config
from graceful.errors import ConfigError
from graceful.http import activation, binding, health, route_deadlines, stopnotice, tls
from graceful.http.access import AccessLogger
from graceful.http.drain import ConnectionTracker
from graceful.http.listeners import Listener
from graceful.http.protocol import DrainingRequestHandler, handler_options
from graceful.lifecycle import appstate, checks, heap, hooks, loader
from graceful.lifecycle.flushing import log_invalid
from graceful.logs import get_logger

if TYPE_CHECKING:
    from graceful import checkpoint as ckpt
    from graceful.lifecycle.worker_link import Takeover

log = get_logger()

KEEPALIVE_TIMEOUT_S = 75.0  # web.run_app's (RequestHandler's own is 3630)


@dataclasses.dataclass(frozen=True)
class Started:
    """Everything a successful start built; the stop works on this."""

    app: web.Application
    state: dict[str, Any]
    tracker: ConnectionTracker
    runner: web.AppRunner
    listeners: tuple[Listener, ...]
    checkpointer: ckpt.Checkpointer | None
    checks: checks.Monitor  # startup checks; retries optional ones from READY to the stop


class Builder:
    """Builds a `Started`, keeping what it has built so far so that a failed start can be
    undone."""

    def __init__(self, source: loader.AppSource, config: Config, *,
                 is_ready: Callable[[], bool], phase: Callable[[], str],
                 takeover: Takeover | None = None) -> None:
        self._source = source
        self._takeover = takeover  # a worker's link to its supervisor (worker_link.py)
        self._config = config
        self._is_ready = is_ready
        self._phase = phase
        self.sockets: list[socket.socket] = []  # bound, not yet listening
        self._inherited: list[tuple[str, socket.socket]] | None = None  # inherit() read them
        self.checkpointer: ckpt.Checkpointer | None = None
        self.app: web.Application | None = None
        self.state: dict[str, Any] = {}
        self.tracker: ConnectionTracker | None = None
        self.listeners: list[Listener] = []
        self.heap = heap.Heap()  # released by the runtime once the serve is over

    @property
    def committed(self) -> bool:
        """The start cannot be undone: a worker has taken over the state the old one left
        at a restart, and the connections queued meanwhile are its to serve (a stop now
        begins once it serves, instead of closing the queue under them)."""
        return bool(getattr(self._takeover, "took_over", False))

    def inherit(self) -> socket.socket | None:
        """Take the sockets handed to us (systemd, or a predecessor's restart): build()
        serves the app's; the metrics listener among them (graceful-metrics) is returned
        for the metrics to serve (closed when metrics are off)."""
        handed = getattr(self._takeover, "sockets", None)  # a Windows worker's: shared
        inherited, metrics = activation.split_metrics(
            handed if handed is not None else activation.inherited_sockets() or [])
        self._inherited = inherited
        self.sockets = [sock for _, sock in inherited]
        if metrics is not None and self._config.metrics_bind is None:
            metrics.close()
            return None
        return metrics

    async def build(self) -> Started:
        config = self._config
        loop = asyncio.get_running_loop()
        # Bind first: a port in use or a host that does not resolve is a configuration
        # error (exit 2) before the app's factory and on_startup run.
        # Sockets handed to us (systemd, or a predecessor's restart) are served as they are.
        if self._inherited is None and (metrics := self.inherit()) is not None:
            metrics.close()  # nobody asked for them (the runtime calls inherit() first)
        inherited = self._inherited
        if not inherited:
            inherited = activation.own_names(binding.open_sockets(
                config.host, config.port, config.bind, config.fd, config.unix_socket_mode,
                config.reuse_port))
        self.sockets = [sock for _, sock in inherited]
        ssl_context = tls.server_context(config)  # each bad file named, before the app runs
        restored = self._open_checkpoint() if config.checkpoint is not None else {}
        app = await loader.build_app(self._source)
        if app.on_startup.frozen:  # not self.app: its cleanup ran when it was last served
            raise ConfigError("this Application has been served already, and aiohttp ties an "
                              "Application to the one loop that served it: to serve again, "
                              "pass a factory that builds a new Application")
        self.app = app
        # the app's own dict is kept, the restored keys merged into it (appstate.py)
        self.state = appstate.adopt(app, restored)
        if self.checkpointer is not None:
            self.checkpointer.state = self.state
            log_invalid(self.checkpointer.check())
        # startup checks (graceful.add_check): required ones must pass, optional ones degrade
        monitor = checks.Monitor(app)
        await monitor.start(config.startup_timeout)
        if config.health:  # two routes of the app's router, before the runner freezes it
            health.Health(config.livez_path, config.readyz_path, is_ready=self._is_ready,
                          phase=self._phase, degraded=monitor.degraded,
                          degraded_ready=config.degraded_ready).install(app)
        self.tracker = tracker = ConnectionTracker(loop)
        access = {"access_log_class": AccessLogger} if config.access_log else {"access_log": None}
        hooks.bound_startup(app, config.startup_timeout)
        stopnotice.attach(app)  # graceful.stopping(request) fires when the drain begins
        if routes := route_deadlines.routes_with_deadlines(app):
            log.info("drain.route_deadlines", routes=routes)
        # run_app's keep-alive default; the app's handler_args still win, as under run_app
        runner = web.AppRunner(app, handle_signals=False,
                               keepalive_timeout=KEEPALIVE_TIMEOUT_S, **access)
        await runner.setup()  # on_startup and cleanup_ctx run here
        server = runner.server
        assert server is not None
        options = handler_options(server)  # the runner's, the app's debug and handler_args

        def factory() -> DrainingRequestHandler:
            return DrainingRequestHandler(server, tracker=tracker, loop=loop, **options)

        accepting = asyncio.Event()
        if self._takeover is not None:  # a worker: with a checkpoint, the last state written
            # a restart's new worker: an old one's idle connections, served once we accept
            self._takeover.take_connections(factory, accepting, lambda: tracker.stopping)
            await self._takeover.before_accepting(self.checkpointer, self.state)
        sockets, self.sockets = self.sockets, []
        self.listeners += [Listener(sock, factory, ssl=ssl_context, name=name)
                           for sock, (name, _) in zip(sockets, inherited, strict=True)]
        self.heap.settle()  # no full collection walks the startup heap under load
        for listener in self.listeners:
            await listener.start(config.backlog)
        accepting.set()
        return Started(app, self.state, tracker, runner, tuple(self.listeners),
                       self.checkpointer, monitor)

    def _open_checkpoint(self) -> dict[str, Any]:
        assert self._config.checkpoint is not None
        # probe the folder, take the lock, then read: refused now rather than at the stop
        # imported here: a server without a checkpoint does not pay for it at start
        from graceful.checkpoint import Checkpointer

        lock_fd = self._takeover.lock_fd if self._takeover is not None else None
        self.checkpointer = checkpointer = Checkpointer.open(
            self._config.checkpoint, handed_over_lock_fd=lock_fd)
        if checkpointer.fallback is not None:
            log.warning("checkpoint.fallback", error=str(checkpointer.fallback))
        if (snapshot := checkpointer.restored) is None:
            return {}
        log.info("checkpoint.restored", path=str(snapshot.path), generation=snapshot.generation,
                 age_s=round(snapshot.age_s(), 3), keys=len(snapshot.state))
        return snapshot.state

    async def undo(self) -> None:
        """Undo a start that failed or was cancelled, whatever it had reached."""
        self.heap.release()
        for sock in self.sockets:
            sock.close()
        if self.checkpointer is not None:
            self.checkpointer.close()
        for listener in self.listeners:
            await listener.close()
        if self.tracker is not None:
            self.tracker.abort_all()
        if self.app is not None and self.app.on_startup.frozen:
            timeout = self._config.hook_timeout
            await hooks.run_steps(hooks.cleanup_steps(self.app), timeout, lambda: timeout)
