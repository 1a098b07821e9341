"""How the stop closes websockets: the close code, its reason, the closing handshake's bound.

A stop sends 1001 (going away); a restart (new workers serve already) sends 1012 (service
restart), which tells a client to reconnect to the same address at once. The reason text is
the operator's (--websocket-close-reason). The closing handshake (our close frame, the
client's reply) is bounded by --websocket-close-timeout: a client that never answers has its
connection dropped then (aiohttp's own close would wait its `timeout`, 10 s by default), and the
handler's receive loop ends as for any closed websocket.

The usual handler waits in `async for msg in ws`. aiohttp's close() from another task ends
that wait at once and drops the connection without the client's close frame: a client that
reads our close a moment later can no longer answer it and reports 1006 (abnormal) rather
than 1001. For such a handler the frame is sent here instead, and its pending receive takes
the client's reply; the handler then returns and aiohttp closes the connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from aiohttp import WSCloseCode, web

from graceful.http import aiohttp_internals as internals
from graceful.logs import get_logger

# A websocket whose handshake response is still being written cannot be closed yet
# (aiohttp: "Call .prepare() first"): it is tried again this long.
HANDSHAKE_WAIT_S = 1.0

log = get_logger()


@dataclasses.dataclass(frozen=True)
class WebSocketClose:
    code: int = WSCloseCode.GOING_AWAY
    reason: str = "server stopping"
    timeout: float = 5.0  # the closing handshake's bound, seconds


GOING_AWAY = WebSocketClose()


def restart_close(stop: WebSocketClose) -> WebSocketClose:
    """The close a restart sends: 1012, with the stop's reason and bound."""
    return dataclasses.replace(stop, code=WSCloseCode.SERVICE_RESTART)


def close(ws: web.WebSocketResponse, how: WebSocketClose,
          connection: asyncio.Task[None] | None = None) -> asyncio.Task[bool]:
    """Close `ws` as `how` says; one whose handshake is still being written is closed as
    soon as it is done. `connection`: the task serving its connection (`request.task`),
    which ends once the handler has returned after the client's close frame; without it,
    aiohttp's own close is used."""
    async def run() -> bool:
        deadline = time.monotonic() + HANDSHAKE_WAIT_S
        message = how.reason.encode()
        while True:
            if connection is not None and internals.receiving(ws):
                return await _handshake(ws, how, connection)
            try:
                async with asyncio.timeout(how.timeout):
                    # aiohttp closes the transport itself when this is cancelled
                    return await ws.close(code=how.code, message=message)
            except TimeoutError:
                log.warning("websocket.close_timeout", code=how.code, timeout_s=how.timeout)
                return False
            except RuntimeError:  # "Call .prepare() first"
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.01)

    return asyncio.ensure_future(run())


async def _handshake(ws: web.WebSocketResponse, how: WebSocketClose,
                     connection: asyncio.Task[None]) -> bool:
    """Our close frame, then the client's, taken by the handler's own pending receive."""
    try:
        await internals.send_close(ws, how.code, how.reason.encode())
    except ConnectionError:  # the client has gone already
        internals.drop(ws)
        return False
    done, _ = await asyncio.wait([connection], timeout=how.timeout)
    if done or ws.close_code is not None:  # answered (its handler may still be at work)
        return True
    log.warning("websocket.close_timeout", code=how.code, timeout_s=how.timeout)
    internals.drop(ws)
    return False
