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
request class, so `isinstance` holds): its responses are shown to the tracker before their
headers are written, which says Connection: close once the stop has begun. Nothing is
switched at the stop. Cost: the hooks on the request path are plain function calls, never
an extra coroutine (an `async` wrapper around `_handle_request` plus an
`on_response_prepare` receiver cost about 4 us a request, 0.86x bare aiohttp's requests/s
on uvloop; see bench/protocol_cost.py for these). Which request is in flight is read from
aiohttp's own state when the drain asks, not recorded per request. Stamps use
time.monotonic (a C call, unlike asyncio's loop.time; and not uvloop's millisecond clock).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.web_protocol import RequestHandler

from graceful.http import aiohttp_internals as internals
from graceful.logs import get_logger

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

_monotonic = time.monotonic  # log_access's `time` parameter shadows the module
_base_data_received = RequestHandler.data_received
_base_log_access = RequestHandler.log_access
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


@dataclasses.dataclass(frozen=True, eq=False)
class InFlight:
    """A request whose handler has not finished (or whose response is being written)."""

    method: str
    path: str
    started: float  # time.monotonic() when its message was taken off the connection
    task: asyncio.Task[None] | None  # the connection's task, which awaits the handler
    protocol: DrainingRequestHandler

    @property
    def done(self) -> bool:
        return not internals.request_in_progress(self.protocol)


@functools.cache
def tracked_class(cls: type[web.BaseRequest]) -> type[web.BaseRequest]:
    """`cls` that shows the tracker each response before its headers are written. Its
    clones (a middleware's `request.clone()`) are of it too."""
    if getattr(cls, "_graceful_tracked", False):
        return cls
    return internals.showing_responses(cls, f"Tracked{cls.__name__}", __name__)


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

    __slots__ = ("_idle_rx", "_idle_since", "_new_request", "_new_tracked", "_request", "_rx",
                 "_started", "tracker")

    def __init__(self, manager: Any, *, tracker: Tracker,
                 loop: asyncio.AbstractEventLoop, request_handler: Handler | None = None,
                 **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self.tracker = tracker
        if request_handler is not None:  # the app's, behind the health answers
            internals.set_request_handler(self, request_handler)
        self._rx = 0  # data_received calls so far
        self._idle_rx = 0  # ... when the last response ended
        self._idle_since = _monotonic()
        self._started = 0.0
        self._request: weakref.ref[web.BaseRequest] | None = None
        self._new_request = manager.request_factory
        # aiohttp's own factory takes the class to make; None: an app's own factory
        self._new_tracked = internals.factory_making(self._new_request,
                                                     tracked_class(web.Request))
        internals.set_request_factory(self, self._make_tracked_request)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.tracker.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        # Read before aiohttp forgets the task: a handler can outlive its client.
        leftover = self.in_flight()
        super().connection_lost(exc)
        self.tracker.closed(self, leftover)

    def data_received(self, data: bytes) -> None:
        self._rx += 1
        _base_data_received(self, data)

    def _make_tracked_request(self, message: RawRequestMessage, payload: Any, protocol: Any,
                              writer: Any, task: Any) -> web.BaseRequest:
        self._started = _monotonic()
        if self._new_tracked is not None:
            request = self._new_tracked(message, payload, protocol, writer, task)
        else:  # an Application subclass with a request factory of its own: made tracked
            # here, before anyone holds it (never at the stop)
            request = self._new_request(message, payload, protocol, writer, task)
            internals.set_class(request, tracked_class(type(request)))
        self._request = weakref.ref(request)
        return request

    def log_access(self, request: web.BaseRequest, response: web.StreamResponse,
                   time: float | None) -> None:
        # aiohttp calls this once per request, after its response is written.
        if self.access_logger is not None:  # None: no access log, and one call less
            _base_log_access(self, request, response, time)
        self._idle_since = _monotonic()
        self._idle_rx = self._rx
        if self.tracker.stopping:
            self.tracker.finished()

    def current_request(self) -> web.BaseRequest | None:
        """The latest request made on this connection, while it lives."""
        return self._request() if self._request is not None else None

    def in_flight(self) -> InFlight | None:
        if not internals.request_in_progress(self):
            return None
        request = self._request() if self._request is not None else None
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
            not internals.request_in_progress(self)
            and not internals.queued_requests(self)
            and self._rx == self._idle_rx
            and internals.waiting_for_request(self)
        )
        return now - self._idle_since if quiet else None

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
