"""Drain metrics for Prometheus (`--metrics-bind HOST:PORT`, the `metrics` extra).

Imported only when metrics are asked for: without them neither this module nor
prometheus_client is loaded, and nothing runs per request either way: the counts of
requests and connections are read from the tracker when a scrape asks, not kept up to date.

/metrics is served by prometheus_client's own HTTP server on a thread of its own, not by
aiohttp on the runtime's loop:
- it is not one of the runtime's listeners, so the stop does not close it: a scrape during
  the drain is answered, and it closes last, once the stop has finished (`stopped`);
- a scrape is not a request the drain waits for, nor one a stop answers with
  `Connection: close`, nor a task left over when the loop closes;
- it answers while the loop is busy or blocked, with the values last read (below).
The values that live on the loop (the tracker's sets, the phase) are read on the loop
(`call_soon_threadsafe`), so a scrape never walks a set the loop is changing; if the loop
does not answer within READ_TIMEOUT_S, the last values read are served.

Under graceful serve the supervisor binds the metrics socket and hands it to every worker
with the app's (named graceful-metrics), which serves it instead of binding the port: a
restart never closes it, so no scrape is refused at any instant. There a scrape answers for
the service, not for the worker that accepted it: every worker writes its metrics to the
supervisor's folder (prometheus_client's multiprocess mode: graceful/metrics/shared.py for
the live values, graceful/metrics/registry.py for what a scrape reads).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from graceful.bridge.stop import StopObserver
from graceful.config import parse_bind
from graceful.errors import ConfigError
from graceful.logs import get_logger
from graceful.metrics.registry import Readable, Shared, to_serve
from graceful.metrics.shared import PHASES, PUBLISH_INTERVAL_S, SharedLive

if TYPE_CHECKING:
    from graceful.lifecycle.runtime import Runtime

log = get_logger()

READ_TIMEOUT_S = 0.5
ANSWER_TIMEOUT_S = 0.5  # at the end of the stop, for scrapes accepted and not yet answered
FLUSH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# name, kind, help: the README's metrics table says the same.
NAMES = {
    "graceful_requests_in_flight": "Requests whose handler or response is not done.",
    "graceful_open_connections": "Client connections open to the app's listeners.",
    "graceful_phase": "1 for the runtime's phase (starting, ready, draining, stopped).",
    "graceful_stops_total": "Stop requests counted, by source and mode.",
    "graceful_drain_duration_seconds": "How long the drain of the stop took.",
    "graceful_requests_cancelled_total": "Requests cancelled at the drain deadline.",
    "graceful_hooks_failed_total": "Shutdown hooks (and on_shutdown/on_cleanup) that failed.",
    "graceful_checkpoint_generation": "Generation of the checkpoint last written or restored.",
    "graceful_checkpoint_flush_duration_seconds": "Checkpoint flushes, snapshot to fsync.",
    "graceful_checkpoint_age_seconds": "Seconds since the checkpoint was last written.",
}


class Metrics(StopObserver):
    """The runtime's metrics: counters kept from the stop's notifications, gauges read from
    the runtime at each scrape; served by `bind()` until `stopped`. `shared_folder`: a
    supervisor's worker, whose metrics go to that folder with the other workers'."""

    def __init__(self, runtime: Runtime, bind: str, *, default_registry: bool = True,
                 shared_folder: str | None = None) -> None:
        self._runtime = runtime
        self.host, self.port = parse_bind(bind)
        self._default_registry = default_registry
        self._shared_folder = shared_folder
        self._shared: SharedLive | None = None  # once ready, with a shared folder
        self._timer: asyncio.TimerHandle | None = None
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._stops = Counter("graceful_stops", NAMES["graceful_stops_total"],
                              ["source", "mode"], registry=registry)
        # with workers: the longest drain of the workers alive (one that exited is dropped)
        self._drain = Gauge("graceful_drain_duration_seconds",
                            NAMES["graceful_drain_duration_seconds"], registry=registry,
                            multiprocess_mode="livemax")
        self._cancelled = Counter("graceful_requests_cancelled",
                                  NAMES["graceful_requests_cancelled_total"], registry=registry)
        self._hooks = Counter("graceful_hooks_failed", NAMES["graceful_hooks_failed_total"],
                              registry=registry)
        self._flush = Histogram("graceful_checkpoint_flush_duration_seconds",
                                NAMES["graceful_checkpoint_flush_duration_seconds"],
                                buckets=FLUSH_BUCKETS, registry=registry)
        self._generation: int | None = None
        self._written_at: float | None = None  # time.time() of the checkpoint's content
        self._phase_started: tuple[str, float] | None = None
        self._last: dict[str, Any] = {"phase": "starting", "in_flight": 0, "connections": 0}
        self._server: Any = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        # scrapes waiting for the loop to read: stopped() answers them, as it then waits for
        # the scrapes (close) on the loop they wait for
        self._waiting: set[concurrent.futures.Future[dict[str, Any]]] = set()
        if shared_folder is None:
            registry.register(_LiveValues(self))

    # -- the listener ----------------------------------------------------------------------

    def bind(self, inherited: socket.socket | None = None) -> None:
        """Serve /metrics; ConfigError (exit 2) when the address cannot be listened on.
        Called on the loop, whose values a scrape then reads there. `inherited`: the
        listening socket a restart's predecessor handed over (graceful-metrics), served
        as it is: the predecessor still holds the port, and still answers scrapes from
        the same socket until its stop has finished."""
        self._event_loop = asyncio.get_running_loop()
        if inherited is not None and self.port not in (0, inherited.getsockname()[1]):
            inherited.close()  # the configured port changed (a config file): bind that one
            inherited = None
        try:
            sock = inherited if inherited is not None else _listen(self.host, self.port)
        except OSError as err:
            raise ConfigError(f"cannot serve metrics on {self.host}:{self.port}: "
                              f"{err.strerror or err}") from err
        shared = None
        if self._shared_folder is not None:
            shared = Shared(self._shared_folder, self._refresh,
                            frozenset(name.removesuffix("_total") for name in NAMES))
        self._server = _serve(sock, to_serve(self.registry, shared=shared,
                                             default_registry=self._default_registry))
        self.port = self._server.server_port
        log.info("metrics.started", host=self.host, port=self.port)

    @property
    def listening_socket(self) -> socket.socket | None:
        """The listening socket, while served."""
        return self._server.socket if self._server is not None else None

    def close(self, answer_within: float = 0.0) -> None:
        """Stop accepting scrapes at once, answer those already accepted (for up to
        `answer_within` seconds: the process exits soon after, which would cut them), and
        stop listening without making the loop wait for the server's poll interval. Under a
        supervisor the scrapes not accepted yet wait in the queue for the other workers."""
        server, self._server = self._server, None
        if server is not None:
            server.stop_accepting(answer_within)

            def shut() -> None:
                server.shutdown()
                server.server_close()
            threading.Thread(target=shut, name="graceful-metrics-close", daemon=True).start()

    # -- told by the runtime (on the loop) --------------------------------------------------

    def ready(self) -> None:
        self._last = self._read()
        if self._shared_folder is not None:
            self._shared = SharedLive(NAMES)
            self._tick()

    def stop_requested(self, source: str, mode: str) -> None:
        self._stops.labels(source=source, mode=mode).inc()
        self._update()

    def phase(self, name: str, time_left_s: float) -> None:
        now = time.monotonic()
        if self._phase_started is not None and self._phase_started[0] == "drain":
            self._drain.set(now - self._phase_started[1])
        self._phase_started = (name, now)
        if name == "cancel":  # all of these are cancelled at once (Runtime._cancel)
            self._cancelled.inc(self._runtime.requests_in_flight)
        self._update()

    def drain_progress(self, in_flight: int, time_left_s: float) -> None:
        self._update()

    def hooks_failed(self, names: list[str]) -> None:
        self._hooks.inc(len(names))

    def checkpoint_flushed(self, generation: int, took_s: float | None,
                           written_at: float) -> None:
        if took_s is not None:
            self._flush.observe(took_s)
        self._generation, self._written_at = generation, written_at
        self._publish()

    def stopped(self, exit_code: int) -> None:
        if self._phase_started is not None and self._phase_started[0] == "drain":
            self._drain.set(time.monotonic() - self._phase_started[1])
        self._last = {**self._read(), "phase": "stopped"}
        if self._timer is not None:
            self._timer.cancel()
        self._publish()
        for future in list(self._waiting):
            if not future.done():
                future.set_result(self._last)
        self.close(answer_within=ANSWER_TIMEOUT_S)

    # -- a supervisor's worker: its live values written for the other workers' scrapes ----

    def _update(self) -> None:
        self._last = self._read()
        self._publish()

    def _tick(self) -> None:
        self._update()
        self._timer = asyncio.get_running_loop().call_later(PUBLISH_INTERVAL_S, self._tick)

    def _publish(self) -> None:
        if self._shared is not None:
            self._shared.publish(self._last, self._generation, self._written_at)

    def _refresh(self) -> None:
        """Before a scrape this worker answers: its own values as they are now."""
        if self._shared is not None:
            self.live()
            self._publish()

    # -- read for a scrape (on the scrape's thread) -----------------------------------------

    def _read(self) -> dict[str, Any]:
        runtime = self._runtime
        return {"phase": str(runtime.phase), "in_flight": runtime.requests_in_flight,
                "connections": runtime.open_connections}

    def live(self) -> dict[str, Any]:
        """The values that live on the loop, read there; the last ones if it is busy."""
        loop = self._event_loop
        if loop is None or loop.is_closed() or self._last["phase"] == "stopped":
            return self._last
        future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._waiting.add(future)
        if self._last["phase"] == "stopped":  # stopped() did not see it: it will not answer
            self._waiting.discard(future)
            return self._last

        def read() -> None:
            if future.done():  # answered by stopped() (both run on the loop)
                return
            try:
                future.set_result(self._read())
            except BaseException as err:  # handed to the scrape's thread
                future.set_exception(err)

        try:
            loop.call_soon_threadsafe(read)
            self._last = future.result(READ_TIMEOUT_S)
        except (RuntimeError, concurrent.futures.TimeoutError):  # closed, or busy
            pass
        finally:
            self._waiting.discard(future)
        return self._last


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on the first address `host` resolves to (as prometheus_client's
    start_http_server does)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                  flags=socket.AI_PASSIVE)[0]
    return socket.create_server(address, family=family)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A scrape is not logged (prometheus_client's own handler does the same)."""


class _Closed(Exception):
    """Ends serve_forever at its next wake once the server stops accepting."""


class _Server(ThreadingWSGIServer):
    """prometheus_client's server, counting the scrapes it accepted and has not answered,
    so that the end of the stop can stop accepting and wait for those (the thread that
    answers a scrape is a daemon: the process's exit would cut it)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.getsockname()[:2], _QuietHandler, bind_and_activate=False)
        self._answering = threading.Condition()
        self._open = 0
        self._closing = False

    def get_request(self) -> Any:
        with self._answering:  # no accept once stop_accepting() has begun
            if self._closing:
                raise _Closed
            request = super().get_request()
            self._open += 1
            return request

    def shutdown_request(self, request: Any) -> None:  # once for each request accepted
        try:
            super().shutdown_request(request)
        finally:
            with self._answering:
                self._open -= 1
                self._answering.notify_all()

    def stop_accepting(self, timeout: float) -> bool:
        """True once every scrape accepted is answered, False if some are not at `timeout`."""
        with self._answering:
            self._closing = True
            return self._answering.wait_for(lambda: self._open == 0, timeout)

    def serve(self) -> None:
        with contextlib.suppress(_Closed):
            self.serve_forever()


def _serve(sock: socket.socket, registry: Readable) -> _Server:
    """prometheus_client's server (start_http_server's pieces) on a listening socket of
    ours, on a thread of its own: what TCPServer's bind would have set, set from the
    socket. Non-blocking: after a restart two processes accept from this one socket, and
    the one that wakes to find the connection taken gets EAGAIN (socketserver ignores an
    OSError from accept and selects again) instead of blocking in accept(), where its
    shutdown() could not reach it."""
    server = _Server(sock)
    server.socket.close()  # the one TCPServer made, unbound
    server.socket = sock
    server.server_address = sock.getsockname()
    host, port = server.server_address[:2]
    server.server_name, server.server_port = socket.getfqdn(host), port
    server.setup_environ()
    server.set_app(make_wsgi_app(registry))  # type: ignore[arg-type]
    sock.setblocking(False)
    threading.Thread(target=server.serve, name="graceful-metrics", daemon=True).start()
    return server


class _LiveValues(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        metrics = self._metrics
        values = metrics.live()
        yield GaugeMetricFamily("graceful_requests_in_flight",
                                NAMES["graceful_requests_in_flight"], value=values["in_flight"])
        yield GaugeMetricFamily("graceful_open_connections", NAMES["graceful_open_connections"],
                                value=values["connections"])
        phase = GaugeMetricFamily("graceful_phase", NAMES["graceful_phase"], labels=["phase"])
        for name in PHASES:
            phase.add_metric([name], 1.0 if values["phase"] == name else 0.0)
        yield phase
        if metrics._generation is not None:
            yield GaugeMetricFamily("graceful_checkpoint_generation",
                                    NAMES["graceful_checkpoint_generation"],
                                    value=metrics._generation)
        if metrics._written_at is not None:
            yield GaugeMetricFamily("graceful_checkpoint_age_seconds",
                                    NAMES["graceful_checkpoint_age_seconds"],
                                    value=max(time.time() - metrics._written_at, 0.0))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
