"""How the stop closes websockets: the close code, its reason, the closing handshake's bound.

A stop sends 1001 (going away); a restart hand-over will send 1012 (service restart), which
tells a client to reconnect to the same address. The reason text is the operator's
(--websocket-close-reason). The closing handshake (our close frame, the client's reply) is
bounded by --websocket-close-timeout: a client that never answers has its connection
dropped then (aiohttp's own close would wait its `timeout`, 10 s by default), and the
handler's receive loop ends as for any closed websocket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

from aiohttp import WSCloseCode, web

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
    """The close a restart hand-over sends: 1012, with the stop's reason and bound."""
    return dataclasses.replace(stop, code=WSCloseCode.SERVICE_RESTART)


def close(ws: web.WebSocketResponse, how: WebSocketClose) -> asyncio.Task[bool]:
    """Close `ws` as `how` says; one whose handshake is still being written is closed as
    soon as it is done."""
    async def run() -> bool:
        deadline = time.monotonic() + HANDSHAKE_WAIT_S
        message = how.reason.encode()
        while True:
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
