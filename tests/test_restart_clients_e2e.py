"""What a client sees of a restart: it can tell it from a shutdown, and come back at once.

1. A websocket open at a restart is closed with 1012 (service restart), its reason the
   operator's; at a stop, with 1001 (going away).
2. The server-sent-events example (examples/sse.py) at a restart: its last event says
   "retry: 0" (`graceful.stopping(request).kind == "restart"`), and a client reconnecting
   with Last-Event-ID is served the events it missed, in order, by the new worker: no gap.
3. A browser reconnects at once (`retry: 0`) on the same keep-alive connection: that
   connection has moved to a new worker (POSIX), which serves the stream on from the event
   after the last one. The old worker, which could only end it again, never reads it
   (tests/test_browser_e2e.py saw that bounce at every restart when the connection stayed).
4. A stream under way at a restart, sent keep-alive: once it ends its connection moves to a
   new worker, which answers the client's next request.
"""

from __future__ import annotations

import asyncio
import signal

import aiohttp

from tests.test_stopping_e2e import first_event, open_stream, read_chunked


async def test_websockets_get_1012_at_a_restart_and_1001_at_a_stop(serve):
    """1."""
    server = serve("tests.apps:basic")
    server.wait_for("supervisor.ready")
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(f"http://127.0.0.1:{server.port}/ws")
        server.signal(signal.SIGHUP)
        message = await asyncio.wait_for(ws.receive(), 30)
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert (message.data, message.extra) == (1012, "server stopping")
        await asyncio.to_thread(server.wait_for, "restart.done", 30)
        ws = await session.ws_connect(f"http://127.0.0.1:{server.port}/ws")
        server.signal(signal.SIGTERM)
        message = await asyncio.wait_for(ws.receive(), 30)
        assert message.data == 1001
    assert await asyncio.to_thread(server.wait) == 0


async def test_sse_resumes_after_a_restart_without_a_gap(serve):
    """2."""
    server = serve("sse:create_app", "--app-dir", "examples")
    server.wait_for("supervisor.ready")
    conn, _ = await open_stream(server.port)
    await asyncio.sleep(0.5)
    server.signal(signal.SIGHUP)
    body, whole = await read_chunked(conn)
    assert whole and body.endswith(b"event: bye\ndata: server restarting\nretry: 0\n\n"), body
    ids = [int(line[4:]) for line in body.decode().splitlines() if line.startswith("id: ")]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    await asyncio.to_thread(server.wait_for, "restart.done", 30)
    conn, _ = await open_stream(server.port, headers={"Last-Event-ID": str(ids[-1])})
    await asyncio.sleep(0.5)
    server.signal(signal.SIGTERM)
    body, whole = await read_chunked(conn)
    resumed = [int(line[4:]) for line in body.decode().splitlines() if line.startswith("id: ")]
    assert resumed[:3] == [ids[-1] + 1, ids[-1] + 2, ids[-1] + 3]
    assert body.endswith(b"retry: 1000\n\n")
    assert await asyncio.to_thread(server.wait) == 0


async def test_an_sse_reconnection_on_the_same_connection_is_served_by_a_new_worker(serve):
    """3."""
    server = serve("sse:create_app", "--app-dir", "examples")
    server.wait_for("supervisor.ready")
    conn, _ = await open_stream(server.port)
    server.signal(signal.SIGHUP)
    body, whole = await read_chunked(conn, timeout=60)
    assert whole and body.endswith(b"retry: 0\n\n"), body
    last = [line[4:] for line in body.decode().splitlines() if line.startswith("id: ")][-1]
    conn.send("GET", "/events", headers={"Last-Event-ID": last})  # as a browser does, at once
    head = await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 30)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert (await first_event(conn)).startswith(f"id: {int(last) + 1}\n".encode())
    await asyncio.to_thread(server.wait_for, "restart.done", 30)
    conn.close()
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0


async def test_a_stream_under_way_at_a_restart_moves_its_connection_once_it_ends(serve):
    """4."""
    server = serve("tests.apps:basic")
    server.wait_for("supervisor.ready")
    conn, headers = await open_stream(server.port, "/stream-until-stopping")
    assert headers.get("connection", "keep-alive").lower() != "close"
    server.signal(signal.SIGHUP)
    body, whole = await read_chunked(conn, timeout=30)
    assert whole and body.endswith(b"bye\n"), body
    response = await asyncio.wait_for(conn.request("GET", "/fast"), 30)  # the same connection
    assert response.status == 200 and not response.closes
    await asyncio.to_thread(server.wait_for, "restart.done", 30)  # the old worker is gone
    response = await asyncio.wait_for(conn.request("GET", "/fast"), 30)
    assert response.status == 200
    conn.close()
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0
