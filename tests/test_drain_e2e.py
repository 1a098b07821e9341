"""Connections at the stop: idle ones close, half-sent ones are served, websockets get 1001,
and connections waiting in the kernel's accept queue are served rather than reset.

1. An idle keep-alive connection is closed promptly at the stop; the process exits 0.
2. A request whose headers were half sent at the stop is served (with Connection: close).
3. A websocket is closed with 1001 (going away) when the drain starts.
4. Listener.close() serves connections still in the accept queue; a plain close resets them.
5. A streaming response in progress at the stop finishes within the deadline.
6. A websocket whose handshake comes during the drain gets 1001 as soon as it is open.
"""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest
from aiohttp import web

from graceful.host.loops import loop_factory
from graceful.http.listeners import Listener, bind
from tests.rawhttp import Connection, caught_up


async def test_idle_keepalive_connection_closes_promptly(serve):
    """1."""
    server = serve("tests.apps:basic")
    conn = await Connection.open(server.port)
    response = await conn.request("GET", "/fast")
    assert response.status == 200 and not response.closes
    started = time.monotonic()
    server.signal()
    assert await conn.at_eof(5)
    assert await asyncio.to_thread(server.wait) == 0
    assert time.monotonic() - started < 2


async def test_half_sent_request_at_stop_is_served(serve):
    """2. The drain is kept open by a slow request; the half-sent one completes later."""
    server = serve("tests.apps:basic", "--drain-timeout", "10")
    slow = await Connection.open(server.port)
    slow.send("GET", "/traced?s=1.5")
    half = await Connection.open(server.port)
    assert (await half.request("GET", "/fast")).status == 200  # now a keep-alive connection
    half.writer.write(b"GET /fast HTTP/1.1\r\nHost: t\r\n")
    await half.writer.drain()
    await asyncio.to_thread(server.wait_for, "app.handler_started", n=1)
    await caught_up(server.port)  # the half-sent bytes have been read (no event says so)
    server.signal()
    await asyncio.to_thread(server.wait_for, "listeners.closed")
    await asyncio.sleep(0.3)  # far longer than the quiet time for idle connections
    half.writer.write(b"\r\n")
    response = await half.read_response()
    assert response.status == 200 and response.closes
    assert (await slow.read_response()).status == 200
    assert await asyncio.to_thread(server.wait) == 0


async def test_websocket_gets_going_away(serve):
    """3."""
    server = serve("tests.apps:basic")
    message = await websocket_close_at_stop(server)
    assert message.data == aiohttp.WSCloseCode.GOING_AWAY
    assert await asyncio.to_thread(server.wait) == 0


async def websocket_close_at_stop(server) -> aiohttp.WSMessage:
    """Open `/ws` (the echo of tests/apps.py), echo once, stop the server: the close frame
    the stop sent."""
    async with aiohttp.ClientSession() as session, session.ws_connect(
        f"http://127.0.0.1:{server.port}/ws"
    ) as ws:
        await ws.send_str("hi")
        assert (await ws.receive(5)).data == "hi"
        server.signal()
        message = await ws.receive(5)
        assert message.type is aiohttp.WSMsgType.CLOSE
        return message


async def test_streaming_response_in_progress_finishes(serve):
    """5. Its headers went out before the stop (keep-alive); the body still arrives whole,
    then the connection is closed as idle."""
    server = serve("tests.apps:basic", "--drain-timeout", "10")
    async with aiohttp.ClientSession() as session, session.get(
        f"http://127.0.0.1:{server.port}/stream"
    ) as response:
        first = await response.content.readline()
        server.signal()
        rest = await response.content.read()
    assert first + rest == b"".join(f"chunk {i}\n".encode() for i in range(10))
    assert await asyncio.to_thread(server.wait) == 0


def _queue_connections(port: int, count: int) -> list[socket.socket]:
    """Connect and send a request with blocking sockets while the loop cannot accept."""
    clients = []
    for _ in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        clients.append(client)
    return clients


async def _answers(client: socket.socket) -> bytes:
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    data = b""
    try:
        while chunk := await asyncio.wait_for(loop.sock_recv(client, 4096), 5):
            data += chunk
    except ConnectionResetError:
        return b"RESET"
    finally:
        client.close()
    return data


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def _served_server() -> tuple[web.Server, web.ServerRunner]:
    server = web.Server(_hello)
    runner = web.ServerRunner(server)
    await runner.setup()
    return server, runner


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_listener_close_serves_the_accept_queue(loop_name):
    """4. Connections completed by the kernel but never accepted are answered."""
    _, factory = loop_factory(loop_name)
    loop = factory()
    try:
        loop.run_until_complete(_serve_accept_queue())
    finally:
        loop.close()


async def _serve_accept_queue() -> None:
    server, runner = await _served_server()
    listener = Listener(bind("127.0.0.1", 0, 64), server)
    await listener.start(64)
    clients = _queue_connections(listener.address[1], 5)  # no await: the loop never accepts
    assert await listener.close() == 5
    answers = await asyncio.gather(*(_answers(c) for c in clients))
    assert all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"hello") for a in answers)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(listener.address, timeout=1)
    await runner.cleanup()


async def test_plain_close_would_reset_the_accept_queue():
    """4. The control: closing the server the usual way resets those same connections."""
    server, runner = await _served_server()
    sock = bind("127.0.0.1", 0, 64)
    aio_server = await asyncio.get_running_loop().create_server(server, sock=sock)
    clients = _queue_connections(sock.getsockname()[1], 3)
    aio_server.close()
    answers = await asyncio.gather(*(_answers(c) for c in clients))
    assert all(not a.startswith(b"HTTP/1.1 200") for a in answers)
    await runner.cleanup()


WS_HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n")


async def test_websocket_opened_during_the_drain_gets_going_away(serve):
    """6. The connection was accepted before the stop; the upgrade is sent after it."""
    server = serve("tests.apps:basic", "--drain-timeout", "10")
    slow = await Connection.open(server.port)
    slow.send("GET", "/traced?s=1.5")  # keeps the drain going
    late = await Connection.open(server.port)
    await asyncio.to_thread(server.wait_for, "app.handler_started", n=1)
    server.signal()
    await asyncio.to_thread(server.wait_for, "listeners.closed")
    late.writer.write(WS_HANDSHAKE)
    head = await asyncio.wait_for(late.reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    frame = await asyncio.wait_for(late.reader.readexactly(4), 5)
    assert frame[0] == 0x88 and int.from_bytes(frame[2:4], "big") == 1001  # close, going away
    late.writer.close()
    assert (await slow.read_response()).status == 200
    assert await asyncio.to_thread(server.wait) == 0
