"""Websockets at the stop: close code, reason text, and the closing handshake's bound.

1. The close carries 1001 and the reason given by --websocket-close-reason.
2. A client that never answers the close is dropped after --websocket-close-timeout, well
   before the drain deadline (aiohttp's own close would wait 10 s); exit 0.
3. The close code is a parameter: a restart's close sends 1012 (service restart).
4. The usual handler (`async for msg in ws`) waits for the client's close frame: an aiohttp
   client that reads the close 0.3 s after it was sent still answers it and sees 1001 (not
   1006), for each of 150 idle websockets at once; the drain ends when they have answered.
5. A client that never answers, while that handler waits for its next message, is dropped
   after --websocket-close-timeout, and the handler returns.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import WSCloseCode, web

from graceful.http import websockets
from tests.test_drain_e2e import websocket_close_at_stop


async def test_close_carries_the_configured_reason(serve):
    """1."""
    server = serve("tests.apps:basic", "--websocket-close-reason", "deploying, reconnect")
    message = await websocket_close_at_stop(server)
    assert (message.data, message.extra) == (WSCloseCode.GOING_AWAY, "deploying, reconnect")
    assert await asyncio.to_thread(server.wait) == 0


WS_HANDSHAKE = (b"GET /slow-ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n")


def _masked_text(text: str) -> bytes:
    mask = b"\x01\x02\x03\x04"
    data = text.encode()
    return (bytes([0x81, 0x80 | len(data)]) + mask
            + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


async def test_client_ignoring_the_close_is_dropped_after_its_own_timeout(serve):
    """2. The handler is busy with a message for 3 s when the stop comes; the client (a raw
    socket) never answers the close: its connection is dropped after 0.3 s, not when the
    handler returns (aiohttp's close waits for the reply as long as that, up to 10 s)."""
    server = serve("tests.apps:with_slow_ws", "--websocket-close-timeout", "0.3",
                   "--drain-timeout", "20")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(WS_HANDSHAKE)
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    writer.write(_masked_text("3"))
    await asyncio.to_thread(server.wait_for, "app.ws_lookup")  # the handler is busy with it
    started = time.monotonic()
    server.signal()
    head = await asyncio.wait_for(reader.readexactly(4), 5)
    assert head[0] == 0x88 and int.from_bytes(head[2:4]) == 1001  # close, going away
    await asyncio.wait_for(reader.read(), 5)  # the rest, up to the drop
    dropped_in = time.monotonic() - started
    writer.close()
    assert dropped_in < 1.5
    assert await asyncio.to_thread(server.wait) == 0
    event = server.wait_for("websocket.close_timeout")
    assert (event["code"], event["timeout_s"]) == (1001, 0.3)
    assert "drain.deadline" not in server.names()


async def test_restart_closes_with_service_restart(aiohttp_client):
    """3."""
    opened: asyncio.Future[web.WebSocketResponse] = asyncio.get_running_loop().create_future()

    async def chat(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        opened.set_result(ws)
        async for _ in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", chat)
    client = await aiohttp_client(app)
    async with client.ws_connect("/ws") as ws:
        how = websockets.restart_close(websockets.WebSocketClose(reason="new version"))
        closing = websockets.close(await opened, how)
        message = await ws.receive(5)
        assert (message.data, message.extra) == (WSCloseCode.SERVICE_RESTART, "new version")
    assert await asyncio.wait_for(closing, 5) is True


async def test_usual_handler_waits_for_the_clients_close(serve):
    """4."""
    server = serve("tests.apps:basic", "--websocket-close-timeout", "3",
                   "--drain-timeout", "20")
    count = 150
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        sockets = [await session.ws_connect(f"http://127.0.0.1:{server.port}/ws")
                   for _ in range(count)]
        for ws in sockets:  # each handler is in its receive loop
            await ws.send_str("hi")
            assert (await ws.receive(5)).data == "hi"
        server.signal()
        await asyncio.sleep(0.3)  # the close frames wait, unread, in each client's socket

        async def answer(ws: aiohttp.ClientWebSocketResponse) -> tuple[object, int | None]:
            message = await ws.receive(5)  # the close: aiohttp's client answers it
            return message.data, ws.close_code

        closes = await asyncio.gather(*(answer(ws) for ws in sockets))
    assert closes == [(WSCloseCode.GOING_AWAY, WSCloseCode.GOING_AWAY)] * count
    assert await asyncio.to_thread(server.wait) == 0
    names = server.names()
    assert "websocket.close_timeout" not in names and "drain.deadline" not in names
    assert server.wait_for("drain.done")["took_s"] < 2


async def test_silent_client_of_the_usual_handler_is_dropped(serve):
    """5. A raw socket opens /ws (tests/apps.py's echo, waiting in `async for`) and never
    answers the close."""
    server = serve("tests.apps:basic", "--websocket-close-timeout", "0.3",
                   "--drain-timeout", "20")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(WS_HANDSHAKE.replace(b"/slow-ws", b"/ws"))
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    writer.write(_masked_text("hi"))
    assert await asyncio.wait_for(reader.readexactly(4), 5) == b"\x81\x02hi"
    started = time.monotonic()
    server.signal()
    head = await asyncio.wait_for(reader.readexactly(4), 5)
    assert head[0] == 0x88 and int.from_bytes(head[2:4]) == 1001
    assert await asyncio.wait_for(reader.read(), 5) == b"server stopping"  # then the drop
    dropped_in = time.monotonic() - started
    writer.close()
    assert 0.3 <= dropped_in < 1.5
    assert await asyncio.to_thread(server.wait) == 0
    event = server.wait_for("websocket.close_timeout")
    assert (event["code"], event["timeout_s"]) == (1001, 0.3)
    assert "drain.deadline" not in server.names()
