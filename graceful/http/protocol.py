"""aiohttp's RequestHandler and Request, observed by the drain.

What it needs of aiohttp's internals it reaches through aiohttp_internals.py, the adapter
that lists each private name and why; pyproject pins aiohttp's minor versions for that
reason, aiohttp_check.py refuses an aiohttp whose names moved, and tests/test_drain_e2e.py
fails if they change meaning.

Why not aiohttp's own shutdown path (`RequestHandler.shutdown`, `close`): both set flags
that make `data_received` drop every incoming byte, so a request body still being uploaded
at the stop is lost and its handler waits for bytes that never come; and the response that
follows carries no `Connection: close`, so a client that already sent its next request on
the keep-alive connection finds it closed. graceful never sets those flags: a draining
connection is ended by its last response saying `Connection: close` (aiohttp then closes
it), and a connection that is idle is closed by the drain only when it is quiet (see
drain.py).

Every request is made of the tracked class from the start (a subclass of the app's own
request class, so `isinstance` holds), by aiohttp's own factory function: nothing wraps the
making of a request, and nothing is switched at the stop. While a stop is in progress the
tracked class shows each response to the tracker before its headers are written, which
then says Connection: close; the rest of the time the class adds nothing to aiohttp's path
(the hook is put on the class at the stop and taken off after a pause, see
show_responses). A connection whose parser has seen an upgrade request makes its next
requests of the websocket class, which always shows its responses: that is how the tracker
learns of every websocket.

Per request, graceful adds two overrides of aiohttp's own calls and nothing else:
data_received notes the first byte after a response (a request's start, and "not quiet";
the rest of a body its handler answered without reading is not a request)
and log_access the end of a response (the start of the quiet time). Which request is in
flight is read from aiohttp's own state (`_current_request`) when the drain asks. The cost
is measured by bench/protocol_cost.py (in process) and `python -m bench throughput`
(end to end, against aiohttp's run_app). Stamps use time.monotonic (a C call, unlike
asyncio's loop.time; and not uvloop's millisecond clock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import time
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader
from aiohttp.web_protocol import RequestHandler

from graceful.http import aiohttp_internals as internals
from graceful.http.accounting import StreamAccount
from graceful.logs import get_logger

_monotonic = time.monotonic  # log_access's `time` parameter shadows the module
_upgrading = internals.upgrading
HEADERS_END = b"\r\n\r\n"
# An idle TLS connection is dropped this long after our close_notify (see close_idle).
TLS_IDLE_CLOSE_WAIT_S = 0.05


class Tracker(Protocol):
    """What a connection tells (graceful/http/drain.py's ConnectionTracker): declared here so
    that the drain depends on the protocol and not the other way round."""

    stopping: bool

    def opened(self, protocol: DrainingRequestHandler) -> None: ...
    def closed(self, protocol: DrainingRequestHandler, leftover: InFlight | None) -> None: ...
    def finished(self) -> None: ...
    def preparing(self, request: web.BaseRequest, response: web.StreamResponse) -> None: ...
    def moving(self, protocol: DrainingRequestHandler) -> bool: ...


@dataclasses.dataclass(frozen=True, eq=False)
class InFlight:
    """A request whose handler has not finished (or whose response is being written)."""

    method: str
    path: str
    started: float  # time.monotonic() of its first byte (or of the end of the response
    # before it, when it was already queued behind that one)
    task: asyncio.Task[None] | None  # the connection's task, which awaits the handler
    protocol: DrainingRequestHandler

    @property
    def done(self) -> bool:
        return not internals.request_in_progress(self.protocol)


# The tracked classes made so far, and the trackers of this process that are stopping: while
# there is one, every tracked class shows its responses (each hook asks its own tracker).
_tracked: list[type[web.BaseRequest]] = []
_stopping: weakref.WeakSet[Tracker] = weakref.WeakSet()


@functools.cache
def tracked_class(cls: type[web.BaseRequest]) -> type[web.BaseRequest]:
    """`cls` that shows the tracker each response before its headers are written while a
    stop is in progress. Its clones (a middleware's `request.clone()`) are of it too."""
    if getattr(cls, "_graceful_tracked", False):
        return cls
    made = internals.showing_responses(cls, f"Tracked{cls.__name__}", __name__, always=False)
    _tracked.append(made)
    internals.show_responses(made, bool(_stopping))
    return made


@functools.cache
def websocket_class(cls: type[web.BaseRequest]) -> type[web.BaseRequest]:
    """tracked_class(cls) that always shows its responses: requests that may open a
    websocket (their connection has parsed an upgrade request)."""
    tracked = tracked_class(cls)
    if vars(tracked).get("_graceful_websocket"):
        return tracked
    made = internals.showing_responses(tracked, f"Upgrade{tracked.__name__}", __name__,
                                       always=True)
    made._graceful_websocket = True  # type: ignore[attr-defined]
    return made


def show_responses(tracker: Tracker, stopping: bool) -> None:
    """`tracker` begins (or ends, after a pause) stopping: tracked classes show their
    responses while any tracker of the process is stopping."""
    if stopping:
        _stopping.add(tracker)
    else:
        _stopping.discard(tracker)
    for cls in _tracked:
        internals.show_responses(cls, bool(_stopping))


@dataclasses.dataclass(frozen=True)
class _Factories:
    """A server's request factories: aiohttp's own function with graceful's class for its
    default class (None: an Application subclass's own factory, wrapped per connection)."""

    plain: Callable[..., web.BaseRequest] | None
    websocket: Callable[..., web.BaseRequest] | None


_factories: weakref.WeakKeyDictionary[web.Server, _Factories] = weakref.WeakKeyDictionary()


def _factories_of(server: web.Server) -> _Factories:
    found = _factories.get(server)
    if found is None:
        own = server.request_factory
        found = _factories[server] = _Factories(
            internals.factory_making(own, tracked_class(web.Request)),
            internals.factory_making(own, websocket_class(web.Request)))
    return found


def handler_options(server: web.Server) -> dict[str, Any]:
    """The keyword arguments aiohttp's Server gives each RequestHandler it makes: the
    runner's (keepalive_timeout, access_log, ...), the app's `debug` and its `handler_args`.

    Like aiohttp's Server, an argument RequestHandler does not take is dropped with a
    warning rather than failing every connection (checked here once, not per connection).
    """
    options = internals.server_handler_kwargs(server)
    accepted = inspect.signature(RequestHandler.__init__).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        get_logger().warning("server.options_ignored", options=unknown)
        options = {key: value for key, value in options.items() if key not in unknown}
    return options


class DrainingRequestHandler(RequestHandler):
    """Tells the tracker when the connection opens and closes, counts receives, and stamps
    when each request starts (for the age of a cancelled one) and when its response ends
    (from which a connection's quiet time is counted)."""

    __slots__ = ("_account", "_answered_body", "_factories", "_idle_since", "_last_bytes",
                 "_new_request", "_prepared", "_quiet", "_said_close", "_started", "in_transit",
                 "parked", "released", "tracker")

    def __init__(self, manager: Any, *, tracker: Tracker,
                 loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self.tracker = tracker
        self._quiet = True  # not one byte received since the last response (or the open)
        self._idle_since = self._started = _monotonic()
        # the body of the request last answered, while it has not all arrived (see
        # data_received)
        self._answered_body: StreamReader | None = None
        # the request whose response was last shown to the tracker while stopping: the one
        # in flight once its handler has returned (aiohttp then forgets it)
        self._prepared: web.BaseRequest | None = None
        # the end of the last bytes received, and where each request ends (see
        # nothing_read_ahead)
        self._last_bytes = HEADERS_END
        self._account = StreamAccount()
        self.in_transit = False  # offered to a new worker at a restart (http/handoff.py)
        self._said_close = False  # the last response said Connection: close
        self.parked = False  # answered, reading paused: offered once its response is out
        self.released = False  # the new worker has it
        self._new_request = manager.request_factory
        self._factories = _factories_of(manager)
        internals.set_request_factory(
            self, self._factories.plain or functools.partial(self._remade, tracked_class))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.tracker.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        # Read before aiohttp forgets the task: a handler can outlive its client.
        leftover = self.in_flight()
        super().connection_lost(exc)
        self.tracker.closed(self, leftover)

    def data_received(self, data: bytes) -> None:
        # (aiohttp calls it with b"" itself, to parse what it buffered while reading was paused)
        if data:
            self._last_bytes = data[-4:]
        if self._quiet and data:  # the first byte since the last response
            body = self._answered_body
            if body is None or body.is_eof():  # a request begins
                self._quiet = False
                self._started = _monotonic()
            else:
                # The rest of a body its handler answered without reading (a 401, a 413):
                # aiohttp reads and drops it, then waits for the next request. Counted as a
                # request it would keep the connection from ever being quiet, and the drain
                # would wait for it until the deadline.
                self._idle_since = _monotonic()
        account = self._account
        if account.known:
            parsed = internals.requests_parsed(self)
        # Through the class (not a copy taken at import): a patch of aiohttp's method, or a
        # class between this one and aiohttp's, is honoured.
        super().data_received(data)
        if account.known:
            parsed = internals.requests_parsed(self) - parsed
            # The usual read (one whole request, its body complete, from where the stream was
            # at a request's end) leaves it at a request's end: not framed, to cost less.
            if not (parsed == 1 and self._last_bytes == HEADERS_END and account.at_request_end
                    and internals.sole_request_complete(self)):
                account.fed(data, internals.last_parsed(self, parsed))
        if self._quiet and self._answered_body is not None and internals.queued_requests(self):
            self._quiet = False  # a request came right behind the end of that body
            self._started = _monotonic()
        if _upgrading(self):  # may be a websocket: made of the class that shows it
            internals.set_request_factory(self, self._factories.websocket or functools.partial(
                self._remade, websocket_class))

    def _remade(self, class_for: Callable[[type[web.BaseRequest]], type[web.BaseRequest]],
                message: RawRequestMessage, payload: Any, protocol: Any, writer: Any,
                task: Any) -> web.BaseRequest:
        """An Application subclass with a request factory of its own: its request is made of
        `class_for(its class)` here, before anyone holds it (never at the stop)."""
        request = self._new_request(message, payload, protocol, writer, task)
        internals.set_class(request, class_for(type(request)))
        return request

    def log_access(self, request: web.BaseRequest, response: web.StreamResponse,
                   time: float | None) -> None:
        # aiohttp calls this once per request, after its response is written.
        if self.access_logger is not None:  # None: no access log, and one call less
            super().log_access(request, response, time)
        # quiet from now, and a request already queued behind this one starts now
        self._idle_since = self._started = _monotonic()
        self._quiet = True
        body = request.content
        self._answered_body = None if body.is_eof() else body
        self._said_close = not response.keep_alive
        if self.tracker.stopping:
            self._prepared = None
            if self.tracker.moving(self):  # a restart's: it goes to a new worker now
                self._park()
            self.tracker.finished()

    def prepared(self, request: web.BaseRequest) -> None:
        """`request`'s response is being prepared while stopping (see _prepared)."""
        self._prepared = request

    def current_request(self) -> web.BaseRequest | None:
        """The request in flight on this connection: the one whose handler is running, or
        whose response was prepared while stopping, or (read from aiohttp's frame, only
        when asked) whose response is still being written after its handler returned; None
        when there is none."""
        running = internals.current_request(self)
        if running is not None:
            return running
        if self._prepared is not None:
            return self._prepared
        if not internals.request_in_progress(self):
            return None
        return internals.request_being_answered(self)

    def in_flight(self) -> InFlight | None:
        if not internals.request_in_progress(self):
            return None
        request = self.current_request()
        return InFlight(request.method if request is not None else "?",
                        request.path if request is not None else "?", self._started,
                        internals.connection_task(self), self)

    def cancel_request(self) -> asyncio.Future[None]:
        """Cancel the handler in flight; the future is done when it has unwound. Nothing more
        is served on this connection (a handler that returns on cancellation would otherwise
        let the connection wait for its next request)."""
        waiter = internals.handler_unwound(self)
        self.close()
        task = internals.connection_task(self)
        if task is not None:
            task.cancel()
        return waiter

    @property
    def between_requests(self) -> bool:
        """A response has ended and aiohttp has not yet gone back to waiting for the next
        request: not quiet yet, but about to be."""
        return (not internals.request_in_progress(self) and not internals.queued_requests(self)
                and not internals.waiting_for_request(self) and not internals.closing(self))

    @property
    def has_queued_requests(self) -> bool:
        """Pipelined requests already parsed and waiting for their turn."""
        return internals.queued_requests(self) > 0

    @property
    def never_used(self) -> bool:
        return internals.requests_parsed(self) == 0 and not internals.request_in_progress(self)

    def idle_for(self, now: float) -> float | None:
        """Seconds the connection has been quiet: no request running or queued and not one
        byte received since its last response. None when it is not quiet."""
        quiet = (
            self._quiet
            and not internals.request_in_progress(self)
            and not internals.queued_requests(self)
            and internals.waiting_for_request(self)
        )
        return now - self._idle_since if quiet else None

    @property
    def handable(self) -> bool:
        """Between requests (waiting for the next, or about to: its last response written
        whole) with nothing of the client's read and not yet answered: it can move to
        another process, its next bytes still in the kernel (graceful/http/handoff.py).

        aiohttp's parser keeps the start of a request that came in the same read as the end
        of the one before (a pipelining client) and shows nothing of it: see
        nothing_read_ahead. A connection that has read ahead is not handed: it is closed as
        at any stop."""
        transport = self.transport
        return (self._quiet and not self.in_transit and self.nothing_read_ahead
                and self._answered_body is None and not self._said_close
                and transport is not None
                and not internals.request_in_progress(self) and not internals.closing(self)
                # its task waits for a request: it has not taken one off the queue that it
                # has not started yet (on Python 3.11 a loop iteration where nothing else
                # shows that request)
                and internals.waiting_for_request(self)
                and not _upgrading(self) and not transport.is_closing()
                and transport.get_write_buffer_size() == 0
                and transport.get_extra_info("sslcontext") is None)

    @property
    def movable(self) -> bool:
        """Not TLS and not a websocket: a new worker could take it over between requests."""
        transport = self.transport
        return (transport is not None and not _upgrading(self)
                and transport.get_extra_info("sslcontext") is None)

    @property
    def nothing_read_ahead(self) -> bool:
        """No byte of a next request read yet: every byte received is of requests aiohttp
        has parsed, counted exactly (accounting.py); or else, for a connection that cannot be
        accounted, its last read ended with the blank line that ends a request's headers (a
        partial request ending with one would have been parsed: it would be queued)."""
        return ((self._account.at_request_end or self._last_bytes == HEADERS_END)
                and not internals.queued_requests(self))

    def _park(self) -> None:
        """Its response is written, at a restart: read nothing more, so that it can move once
        the response has left the send buffer (a stream's reconnection, a client's next
        request, wait in the kernel for the new worker). A request already read behind
        it (pipelined, or its start) keeps it here: answered, with Connection: close."""
        if (self.nothing_read_ahead and self._answered_body is None
                and not self._said_close and self.transport is not None):
            self.parked = True
            self.transport.pause_reading()

    def unpark(self) -> None:
        """The hand-off failed: read again; it is an idle connection of a stop."""
        self.parked = False
        self.resume()

    def fileno(self) -> int:
        return self.transport.get_extra_info("socket").fileno()  # type: ignore[union-attr]

    def hold(self) -> None:
        """Offered to a new worker: read nothing more (what comes stays in the kernel)."""
        self.in_transit, self.parked = True, False
        self.transport.pause_reading()  # type: ignore[union-attr]

    def resume(self) -> None:
        """The hand-off failed: ours again, closed as at any stop."""
        self.in_transit = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()  # type: ignore[attr-defined]
            self._idle_since = _monotonic()
            self.tracker.opened(self)  # the drain's again: it looks at it now

    def release(self) -> None:
        """The new worker has it: our descriptor closed, nothing sent (a FIN or a shutdown
        would end the client's connection, which the new worker serves)."""
        self.released = True
        if self.transport is not None:
            self.transport.abort()

    def last_response(self) -> None:
        """A stop began: the response under way is this connection's last. One already sent
        said keep-alive (a stream): once it ends the connection closes, and the client's
        next request goes to a server that serves on, not to this one, which is stopping.
        Pipelined requests queued behind it are answered first (drain.py); a request whose
        body is still coming is left alone (aiohttp reads nothing more on a connection it
        closes: the upload would be cut), its response says Connection: close instead."""
        request = internals.current_request(self)
        if request is None and internals.request_in_progress(self):
            # its handler has returned and its response is being written: sent with
            # keep-alive just before the stop, it would carry one more request to us
            request = internals.request_being_answered(self)
        if (request is not None and request.content.is_eof()
                and not internals.queued_requests(self) and not internals.upgrading(self)):
            self.close()

    def close_idle(self) -> None:
        """Close a quiet connection (see drain.py for why only a quiet one).

        Over TLS the close sends close_notify, then the transport would wait up to 30 s
        (ssl_shutdown_timeout) for the peer's: an idle pooled client never reads to send it,
        and would hold the drain. RFC 8446 6.1 lets the closer not wait: after
        TLS_IDLE_CLOSE_WAIT_S the connection is dropped, our close_notify long sent."""
        transport = self.transport
        self.force_close()
        if transport is not None and transport.get_extra_info("sslcontext") is not None:
            asyncio.get_running_loop().call_later(TLS_IDLE_CLOSE_WAIT_S, transport.abort)

    def abort(self) -> None:
        """Drop the connection now (the drain deadline has passed)."""
        if self.transport is not None:
            self.transport.abort()
