"""aiohttp's RequestHandler and Request, observed by the drain.

This is the one module that leans on aiohttp's private protocol attributes (`_messages`,
`_waiter`, `_request_in_progress`, `_task_handler`, `_request_factory`, `_request_count`,
`_request_handler`, `Request._prepare_hook`, `Server._kwargs`); pyproject pins aiohttp's
minor versions for that reason and tests/test_drain_e2e.py fails if they change meaning.

Why not aiohttp's own shutdown path (`RequestHandler.shutdown`, `close`): both set flags
that make `data_received` drop every incoming byte, so a request body still being uploaded
at the stop is lost and its handler waits for bytes that never come; and the response that
follows carries no `Connection: close`, so a client that already sent its next request on
the keep-alive connection finds it closed. graceful never sets those flags: a draining
connection is ended by its last response saying `Connection: close` (aiohttp then closes
it), and a connection that is idle is closed by the drain only when it is quiet (see
drain.py).

Cost: the hooks on the request path are plain function calls, never an extra coroutine:
an `async` wrapper around `_handle_request` plus an `on_response_prepare` receiver cost
about 4 us a request (0.86x bare aiohttp's requests/s on uvloop); these cost about 0.5 us
(bench/protocol_cost.py). Which request is in flight is read from aiohttp's own
`_request_in_progress` when the drain asks, not recorded per request. Stamps use
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
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http_parser import RawRequestMessage
from aiohttp.web_protocol import RequestHandler

from graceful.logs import get_logger

if TYPE_CHECKING:
    from graceful.drain import ConnectionTracker

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

_monotonic = time.monotonic  # log_access's `time` parameter shadows the module
_base_data_received = RequestHandler.data_received
_base_log_access = RequestHandler.log_access
# An idle TLS connection is dropped this long after our close_notify (see close_idle).
TLS_IDLE_CLOSE_WAIT_S = 0.05


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
        return not self.protocol._request_in_progress


# The request classes the runtime serves are made from the application's own by adding one
# method each, with no new attributes: a request can then be switched from one to the
# other (same layout), and the application still gets an instance of its class.


@functools.cache
def observed_class(cls: type[web.BaseRequest]) -> type[web.BaseRequest]:
    """`cls` that remembers its clones (a middleware's `request.clone()`), so that the stop
    can track them too. Costs nothing per request."""
    if getattr(cls, "_graceful_observed", False):
        return cls

    def clone(self: web.BaseRequest, **changes: Any) -> web.BaseRequest:
        copy: web.BaseRequest = super(observed, self).clone(**changes)
        if isinstance(copy._protocol, DrainingRequestHandler):
            copy._protocol.cloned(copy)
        return copy

    observed = type(f"Observed{cls.__name__}", (cls,),
                    {"clone": clone, "_graceful_observed": True, "__module__": __name__})
    return observed


@functools.cache
def tracked_class(cls: type[web.BaseRequest]) -> type[web.BaseRequest]:
    """`cls` that shows the tracker each response before its headers are written. Only
    websocket upgrades and requests served while stopping are of it (made so, or switched
    to it at the stop): the others pay nothing for it."""
    if getattr(cls, "_graceful_tracked", False):
        return cls

    # Deliberately not `async`: it returns aiohttp's coroutine, so a response costs one
    # function call here rather than one more coroutine.
    def _prepare_hook(self: web.Request, response: web.StreamResponse) -> Awaitable[None]:
        tracker = self._protocol._tracker  # type: ignore[union-attr]
        if tracker.stopping or isinstance(response, web.WebSocketResponse):
            tracker.preparing(self, response)
        return super(tracked, self)._prepare_hook(response)

    tracked = type(f"Tracked{cls.__name__}", (observed_class(cls),),
                   {"_prepare_hook": _prepare_hook, "_graceful_tracked": True,
                    "__module__": __name__})
    return tracked


def _set_class(request: web.BaseRequest, cls: type[web.BaseRequest]) -> None:
    # The subclasses add no slots, so the layout is the same and the swap is safe;
    # object.__setattr__ because aiohttp's DEBUG-mode Request.__setattr__ warns on it.
    object.__setattr__(request, "__class__", cls)


def handler_options(server: web.Server) -> dict[str, Any]:
    """The keyword arguments aiohttp's Server gives each RequestHandler it makes: the
    runner's (keepalive_timeout, access_log, ...), the app's `debug` and its `handler_args`.

    Like aiohttp's Server, an argument RequestHandler does not take is dropped with a
    warning rather than failing every connection (checked here once, not per connection).
    """
    options = dict(server._kwargs)
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

    __slots__ = ("_clones", "_idle_rx", "_idle_since", "_new_observed", "_new_request",
                 "_new_tracked", "_request", "_rx", "_started", "_tracker")

    def __init__(self, manager: Any, *, tracker: ConnectionTracker,
                 loop: asyncio.AbstractEventLoop, request_handler: Handler | None = None,
                 **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._tracker = tracker
        if request_handler is not None:  # the app's, behind the health answers
            self._request_handler = request_handler
        self._rx = 0  # data_received calls so far
        self._idle_rx = 0  # ... when the last response ended
        self._idle_since = _monotonic()
        self._started = 0.0
        self._request: weakref.ref[web.BaseRequest] | None = None
        self._clones: list[weakref.ref[web.BaseRequest]] | None = None
        factory = manager.request_factory
        self._new_request = factory
        self._new_observed = self._new_tracked = None
        if getattr(factory, "__func__", None) is web.Application._make_request:
            # aiohttp's own factory takes the class to make: no swap per request.
            self._new_observed = functools.partial(factory, _cls=observed_class(web.Request))
            self._new_tracked = functools.partial(factory, _cls=tracked_class(web.Request))
        self._request_factory = self._make_request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._tracker.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        # Read before aiohttp forgets the task: a handler can outlive its client.
        leftover = self.in_flight()
        super().connection_lost(exc)
        self._tracker.closed(self, leftover)

    def data_received(self, data: bytes) -> None:
        self._rx += 1
        _base_data_received(self, data)

    def _make_request(self, message: RawRequestMessage, payload: Any, protocol: Any,
                      writer: Any, task: Any) -> web.BaseRequest:
        self._started = _monotonic()
        self._clones = None
        track = message.upgrade or self._tracker.stopping
        make = self._new_tracked if track else self._new_observed
        if make is not None:
            request = make(message, payload, protocol, writer, task)
        else:  # an Application subclass with a request factory of its own
            request = self._new_request(message, payload, protocol, writer, task)
            _set_class(request, (tracked_class if track else observed_class)(type(request)))
        self._request = weakref.ref(request)
        return request

    def cloned(self, request: web.BaseRequest) -> None:
        if self._clones is None:
            self._clones = []
        self._clones.append(weakref.ref(request))

    def track_current_request(self) -> None:
        """At the stop: switch the latest request (and its clones) to its tracked class, so
        that a response not prepared yet says Connection: close."""
        # The latest request, not aiohttp's _current_request: a request made just before
        # the stop may not have reached its handler yet.
        refs = [self._request] if self._request is not None else []
        for ref in [*refs, *(self._clones or ())]:
            request = ref()
            if request is not None:
                _set_class(request, tracked_class(type(request)))

    def log_access(self, request: web.BaseRequest, response: web.StreamResponse,
                   time: float | None) -> None:
        # aiohttp calls this once per request, after its response is written.
        _base_log_access(self, request, response, time)
        self._idle_since = _monotonic()
        self._idle_rx = self._rx
        if self._tracker.stopping:
            self._tracker.finished()

    def in_flight(self) -> InFlight | None:
        if not self._request_in_progress:
            return None
        request = self._request() if self._request is not None else None
        return InFlight(request.method if request is not None else "?",
                        request.path if request is not None else "?", self._started,
                        self._task_handler, self)

    def cancel_request(self) -> asyncio.Future[None]:
        """Cancel the handler in flight; the future is done when it has unwound. Nothing more
        is served on this connection (a handler that returns on cancellation would otherwise
        let the connection wait for its next request)."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._handler_waiter = waiter  # aiohttp resolves it when _handle_request ends
        self.close()
        if self._task_handler is not None:
            self._task_handler.cancel()
        return waiter

    @property
    def between_requests(self) -> bool:
        """A response has ended and aiohttp has not yet gone back to waiting for the next
        request: not quiet yet, but about to be."""
        return (not self._request_in_progress and not self._messages and self._waiter is None
                and not self._force_close and not self._close)

    @property
    def has_queued_requests(self) -> bool:
        """Pipelined requests already parsed and waiting for their turn."""
        return bool(self._messages)

    @property
    def never_used(self) -> bool:
        return self._request_count == 0 and not self._request_in_progress

    def idle_for(self, now: float) -> float | None:
        """Seconds the connection has been quiet: no request running or queued and not one
        byte received since its last response. None when it is not quiet."""
        quiet = (
            not self._request_in_progress
            and not self._messages
            and self._rx == self._idle_rx
            and self._waiter is not None
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
