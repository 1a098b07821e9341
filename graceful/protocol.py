"""aiohttp's RequestHandler, observed by the drain.

This is the one module that leans on aiohttp's private protocol attributes (`_messages`,
`_waiter`, `_handle_request`); pyproject pins aiohttp's minor versions for that reason and
tests/test_drain_e2e.py fails if they change meaning.

Why not aiohttp's own shutdown path (`RequestHandler.shutdown`, `close`): both set flags
that make `data_received` drop every incoming byte, so a request body still being uploaded
at the stop is lost and its handler waits for bytes that never come; and the response that
follows carries no `Connection: close`, so a client that already sent its next request on
the keep-alive connection finds it closed. graceful never sets those flags: a draining
connection is ended by its last response saying `Connection: close` (aiohttp then closes
it), and a connection that is idle is closed by the drain only when it is quiet (see
drain.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

if TYPE_CHECKING:
    from graceful.drain import ConnectionTracker, InFlight


class DrainingRequestHandler(RequestHandler):
    """Tells the tracker when the connection opens, closes, receives bytes, and when each
    request starts and ends (the end is after the response is written)."""

    __slots__ = ("_active", "_idle_rx", "_idle_since", "_rx", "_tracker")

    def __init__(self, manager: Any, *, tracker: ConnectionTracker,
                 loop: asyncio.AbstractEventLoop, **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        self._tracker = tracker
        self._rx = 0  # data_received calls so far
        self._idle_rx = 0  # ... when the connection last went idle
        self._idle_since = loop.time()
        self._active: InFlight | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._tracker.opened(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self._tracker.closed(self)

    def data_received(self, data: bytes) -> None:
        self._rx += 1
        super().data_received(data)

    async def _handle_request(
        self,
        request: BaseRequest,
        start_time: float | None,
        request_handler: Callable[[BaseRequest], Awaitable[StreamResponse]],
    ) -> tuple[StreamResponse, bool]:
        self._active = self._tracker.started(self, request)
        try:
            return await super()._handle_request(request, start_time, request_handler)
        finally:
            active, self._active = self._active, None
            self._idle_since = self._loop.time()
            self._idle_rx = self._rx
            self._tracker.finished(self, active)

    @property
    def has_queued_requests(self) -> bool:
        """Pipelined requests already parsed and waiting for their turn."""
        return bool(self._messages)

    @property
    def never_used(self) -> bool:
        return self._request_count == 0 and self._active is None

    def idle_for(self, now: float) -> float | None:
        """Seconds the connection has been quiet: no request running or queued and not one
        byte received since its last response. None when it is not quiet."""
        quiet = (
            self._active is None
            and not self._messages
            and self._rx == self._idle_rx
            and self._waiter is not None
        )
        return now - self._idle_since if quiet else None

    def close_idle(self) -> None:
        """Close a quiet connection (see drain.py for why only a quiet one)."""
        self.force_close()

    def abort(self) -> None:
        """Drop the connection now (the drain deadline has passed)."""
        if self.transport is not None:
            self.transport.abort()
