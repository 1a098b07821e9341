"""In-flight requests, Connection: close while stopping, quiet idle connections, the deadline.

Keep-alive race (how aiohttp behaves, and what graceful does about it): a server that
closes an idle keep-alive connection can race a request the client has just written on it;
the client then sees the connection close with no answer. aiohttp's own shutdown closes
every connection this way, and its last responses do not say `Connection: close`, so such
races happen at every stop under load. graceful:
  1. from the stop request on, every response says `Connection: close` (unless pipelined
     requests are already queued behind it on that connection: they are answered first),
     so a client never has a reason to reuse a connection that is about to close;
  2. closes an idle connection only once it has been quiet, with not one byte received
     since its last response, for IDLE_QUIET_S; a request that arrives within that window
     is served (with `Connection: close`) instead of being cut;
  3. treats a connection that never sent a request as idle after NEW_CONNECTION_GRACE_S
     (Go issue 22682), so a client that connected just before the listeners closed still
     gets its request in.
What remains is a client that keeps a connection silent for longer than IDLE_QUIET_S after
a response sent before the stop, and then writes at the very instant of the close: HTTP/1.1
gives the server no way to exclude it (RFC 9112 section 9.3.1: clients retry idempotent
requests for this reason).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import hdrs, web

from graceful.http import websockets
from graceful.http.protocol import DrainingRequestHandler, InFlight, show_responses
from graceful.http.route_deadlines import is_stream
from graceful.logs import get_logger

IDLE_QUIET_S = 0.05
NEW_CONNECTION_GRACE_S = 1.0
PROGRESS_EVERY_S = 1.0
PARKED_RECHECK_S = 0.005  # a parked connection's response still in the send buffer

if TYPE_CHECKING:
    from graceful.http.handoff import HandOff

log = get_logger()


@dataclasses.dataclass(frozen=True)
class Cancelled:
    method: str
    path: str
    age_s: float
    unwound: bool  # False: the handler ignored the cancellation past the grace
    stream: bool = False  # its response had started (SSE, chunked, websocket)


class ConnectionTracker:
    """Every connection and every request in flight, and the drain over them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._event_loop = loop
        self.connections: set[DrainingRequestHandler] = set()
        # Handlers still running after their client went away, by the connection's task.
        self.orphans: dict[asyncio.Task[None], InFlight] = {}
        # each open websocket, and the task serving its connection
        self.websockets: weakref.WeakKeyDictionary[
            web.WebSocketResponse, asyncio.Task[None] | None] = weakref.WeakKeyDictionary()
        self.stopping = False  # responses say Connection: close, idle connections close
        self._websockets_closing: websockets.WebSocketClose | None = None
        self._closing: set[asyncio.Task[bool]] = set()
        self._changed = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        # a restart's: where idle connections go instead of being closed (http/handoff.py)
        self.hand_off: HandOff | None = None
        self.closed_while_stopping = 0  # by us, not handed (the hand-off's report)

    # -- called by DrainingRequestHandler ------------------------------------------------

    def opened(self, protocol: DrainingRequestHandler) -> None:
        self.connections.add(protocol)
        if self.stopping:
            self._touch()

    def closed(self, protocol: DrainingRequestHandler, leftover: InFlight | None) -> None:
        self.connections.discard(protocol)
        if self.stopping and not protocol.released:
            self.closed_while_stopping += 1
        task = leftover.task if leftover is not None else None
        if task is not None and not task.done():
            self.orphans[task] = leftover  # type: ignore[assignment]
            task.add_done_callback(self._orphan_done)
        self._touch()

    def finished(self) -> None:
        """A response has been written while stopping."""
        self._touch()

    def preparing(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """A response is about to write its headers (websockets always; others while
        stopping)."""
        if isinstance(response, web.WebSocketResponse):
            self.websockets[response] = request.task
            if self._websockets_closing is not None:
                task = websockets.close(response, self._websockets_closing, request.task)
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        elif self.stopping:
            protocol = request.protocol
            if isinstance(protocol, DrainingRequestHandler):
                protocol.prepared(request)
                if protocol.has_queued_requests:
                    return  # answered first; the last of them says close
                if self.moving(protocol) and protocol.nothing_read_ahead \
                        and request.content.is_eof():
                    return  # kept alive: it moves once answered (protocol.py's park)
            # aiohttp has already chosen the Connection header by now (it computes it
            # before this hook), so set it as well as the close itself.
            response.force_close()
            response.headers[hdrs.CONNECTION] = "close"

    def requests_in_flight(self) -> list[InFlight]:
        """Requests whose handler or response is not done, oldest first."""
        items = [item for protocol in self.connections if (item := protocol.in_flight())]
        return sorted([*items, *self.orphans.values()], key=lambda item: item.started)

    # -- the drain -----------------------------------------------------------------------

    def begin_stopping(self) -> None:
        """From now on responses say Connection: close and quiet connections are closed."""
        self.stopping = True  # every request is of the tracked class: nothing to switch
        # at a restart, the idle connections leave first, in this same step: a request
        # that comes on one from now on is the new worker's, not answered here with close
        self._offer()
        show_responses(self, True)
        for protocol in self.connections:
            if not self.moving(protocol):
                protocol.last_response()
        self._touch()

    def stop_done(self) -> None:
        """The stop is over (nothing more is served): the tracked classes stop asking this
        tracker, so that a later Runtime in the same process pays nothing for it."""
        show_responses(self, False)

    def end_stopping(self) -> None:
        """A pause is over (graceful/lifecycle/pause.py): responses keep connections alive again."""
        self.stopping = False
        show_responses(self, False)
        self._websockets_closing = None
        self._closing.clear()

    def close_websockets(self, how: websockets.WebSocketClose = websockets.GOING_AWAY
                         ) -> None:
        """Close every open websocket as `how` says (1001 at a stop); their handlers then
        return. A websocket opened from now on gets it as soon as its handshake is done."""
        self._websockets_closing = how
        self._closing.update(websockets.close(ws, how, connection)
                             for ws, connection in list(self.websockets.items())
                             if not ws.closed)

    def stop_closing_websockets(self) -> None:
        """The drain is over: closes still waiting for a client's reply are abandoned."""
        for task in self._closing:
            task.cancel()

    async def drain(self, deadline: float, force: asyncio.Event,
                    progress: Callable[[int, float], None]) -> bool:
        """Wait until no request is in flight and every connection is closed.

        Returns False when `deadline` (time.monotonic()) passed or `force` was set first. Reports
        progress about once a second.
        """
        next_tick = time.monotonic() + PROGRESS_EVERY_S
        while True:
            self._close_quiet_connections()
            if not self.connections and not self.orphans:
                return True
            now = time.monotonic()
            if now >= deadline or force.is_set():
                return False
            if now >= next_tick:
                progress(len(self.requests_in_flight()), deadline - now)
                next_tick = now + PROGRESS_EVERY_S
            self._changed.clear()
            waits = [asyncio.ensure_future(self._changed.wait()),
                     asyncio.ensure_future(force.wait())]
            try:
                await asyncio.wait(waits, timeout=min(deadline, next_tick) - now,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    async def cancel_in_flight(self, grace: float) -> list[Cancelled]:
        """Cancel every handler still running, give them `grace` seconds to unwind, and drop
        the connections left over."""
        now = time.monotonic()
        items = self.requests_in_flight()
        streams = [is_stream(item.protocol.current_request()) for item in items]
        waits: list[asyncio.Future[None]] = []
        for item in items:
            if item.task is not None and item.task in self.orphans:
                item.task.cancel()  # its client is gone: the task ends with the handler
                waits.append(item.task)
            elif not item.done:
                waits.append(item.protocol.cancel_request())
        if waits:
            await asyncio.wait(waits, timeout=grace)
        cancelled = [Cancelled(item.method, item.path, round(now - item.started, 3),
                               unwound=item.done, stream=stream)
                     for item, stream in zip(items, streams, strict=True)]
        self.abort_all()
        return cancelled

    def abort_all(self) -> None:
        for protocol in list(self.connections):
            protocol.abort()

    # -- internals -----------------------------------------------------------------------

    def _touch(self) -> None:
        self._changed.set()

    def _orphan_done(self, task: asyncio.Task[None]) -> None:
        self.orphans.pop(task, None)
        self._touch()

    def moving(self, protocol: DrainingRequestHandler) -> bool:
        """At a restart whose hand-off works: `protocol` may go to a new worker once idle."""
        return self.hand_off is not None and self.hand_off.open and protocol.movable

    def _offer(self) -> None:
        """At a restart: the connections that can go to a new worker, offered to it; if
        the hand-off has failed, the ones waiting for it are read again (see protocol.py's
        park)."""
        if self.hand_off is None or not self.stopping:
            return
        if not self.hand_off.open:
            for protocol in self.connections:
                if protocol.parked:
                    protocol.unpark()
            return
        handable = [protocol for protocol in self.connections if protocol.handable]
        if handable:
            self.hand_off.offer(handable)

    def _close_quiet_connections(self) -> None:
        """Close connections quiet long enough (at a restart, hand the idle ones to a new
        worker first: they need no quiet time, their next bytes stay in the kernel); wake up
        when the next one will be."""
        self._offer()
        now = time.monotonic()
        next_due: float | None = None
        for protocol in list(self.connections):
            if protocol.in_transit:
                continue  # the hand-off's: released, or resumed and closed here later
            if protocol.parked:  # to be offered once its response is written whole
                next_due = now + PARKED_RECHECK_S if next_due is None else min(
                    next_due, now + PARKED_RECHECK_S)
                continue
            idle = protocol.idle_for(now)
            if idle is None:
                if not protocol.between_requests:
                    continue
                wait = IDLE_QUIET_S  # about to go quiet, and no event will say when
            else:
                needed = NEW_CONNECTION_GRACE_S if protocol.never_used else IDLE_QUIET_S
                if idle >= needed:
                    protocol.close_idle()
                    continue
                wait = needed - idle
            next_due = now + wait if next_due is None else min(next_due, now + wait)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if next_due is not None:
            self._timer = self._event_loop.call_later(next_due - now, self._touch)

