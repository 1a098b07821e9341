"""The connection tracker in process: a Runtime on 127.0.0.1, raw sockets, the tracker read
directly (no subprocess), one scenario each.

1. An idle keep-alive connection is not in flight, and is closed by the drain.
2. Pipelined requests behind a running one: queued, answered, the last says close.
3. An upload in progress at the stop is in flight, completes, and says close.
4. A websocket is registered as it opens and gets 1001 at the stop.
5. A request cloned by a middleware is of the tracked class, and its response says close.
6. A connection that has sent nothing yet is not closed with the idle ones: a request it
   sends just after the stop is served (Go issue 22682); a silent one is closed later.
7. A request half sent at the stop is not idle: finished after the idle ones are closed,
   it is served, and says close.
8. A handler whose client hung up is still in flight: the drain waits for it.
9. A websocket opened on a keep-alive connection after a plain request is registered too
   (the connection makes its requests of the websocket class once it parses an upgrade).
10. An Application subclass with a request factory of its own: its requests are of its own
    class and of the tracked class; one in flight at the stop says close, and a websocket
    (made of the websocket class) gets 1001.
"""

from __future__ import annotations

import asyncio
import time
import warnings

from aiohttp import web

import graceful
from graceful.http.protocol import DrainingRequestHandler, tracked_class, websocket_class
from tests.apps import _routes, basic
from tests.rawhttp import Connection

WS_HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n")


def runtime(app: web.Application | None = None) -> graceful.Runtime:
    return graceful.Runtime(app or basic(), graceful.Config(port=0, drain_timeout=5))


async def until(condition, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def idle_keep_alive(port: int) -> Connection:
    """A connection with one request answered: the drain closes it once it is quiet, so its
    end tells that the drain has begun closing idle connections."""
    conn = await Connection.open(port)
    assert (await conn.request("GET", "/fast")).status == 200
    return conn


def server_side(rt: graceful.Runtime, conn: Connection) -> DrainingRequestHandler:
    """The tracker's protocol object of `conn`."""
    ours = conn.writer.get_extra_info("sockname")
    return next(protocol for protocol in rt._started.tracker.connections
                if protocol.transport.get_extra_info("peername") == ours)


async def test_idle_connection() -> None:
    """1."""
    async with runtime() as rt:
        conn = await Connection.open(rt.port)
        assert (await conn.request("GET", "/fast")).status == 200
        tracker = rt._started.tracker
        await until(lambda: len(tracker.connections) == 1)
        assert tracker.requests_in_flight() == []
        rt.stop("test")
        assert await conn.at_eof()
        assert await rt.wait_stopped() == 0


async def test_pipelined_requests() -> None:
    """2."""
    async with runtime() as rt:
        conn = await Connection.open(rt.port)
        conn.send("GET", "/slow?s=0.3")
        for _ in range(2):
            conn.send("GET", "/fast")
        tracker = rt._started.tracker
        await until(lambda: any(p.has_queued_requests for p in tracker.connections))
        [in_flight] = tracker.requests_in_flight()
        assert in_flight.path == "/slow" and not in_flight.done
        rt.stop("test")
        responses = [await conn.read_response() for _ in range(3)]
        assert [r.status for r in responses] == [200] * 3
        assert responses[-1].closes and not responses[0].closes
        assert await rt.wait_stopped() == 0


async def test_upload_in_progress() -> None:
    """3."""
    async with runtime() as rt:
        idle = await idle_keep_alive(rt.port)
        conn = await Connection.open(rt.port)
        conn.writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        tracker = rt._started.tracker
        await until(lambda: len(tracker.requests_in_flight()) == 1)
        rt.stop("test")
        assert await idle.at_eof()  # the drain has closed what it may close
        assert [r.path for r in tracker.requests_in_flight()] == ["/upload"]
        conn.writer.write(b"world")
        response = await conn.read_response()
        assert response.status == 200 and response.closes
        assert await rt.wait_stopped() == 0


async def test_websocket() -> None:
    """4."""
    async with runtime() as rt:
        reader, writer = await asyncio.open_connection("127.0.0.1", rt.port)
        await websocket_gets_1001(rt, reader, writer)


async def test_clone() -> None:
    """5."""
    seen: list[type] = []

    @web.middleware
    async def cloning(request: web.Request, handler):
        clone = request.clone(rel_url=request.rel_url)
        seen.append(type(clone))
        return await handler(clone)

    app = basic()
    app.middlewares.append(cloning)
    async with runtime(app) as rt:
        conn = await Connection.open(rt.port)
        conn.send("GET", "/slow?s=0.3")
        tracker = rt._started.tracker
        await until(lambda: len(tracker.requests_in_flight()) == 1)
        rt.stop("test")
        response = await conn.read_response()
        assert response.status == 200 and response.closes
        assert seen == [tracked_class(web.Request)]
        assert await rt.wait_stopped() == 0


async def test_connection_with_no_request_yet() -> None:
    """6."""
    async with runtime() as rt:
        idle = await idle_keep_alive(rt.port)
        fresh, silent = await Connection.open(rt.port), await Connection.open(rt.port)
        tracker = rt._started.tracker
        await until(lambda: sum(p.never_used for p in tracker.connections) == 2)
        rt.stop("test")
        assert await idle.at_eof()
        response = await fresh.request("GET", "/fast")
        assert response.status == 200 and response.closes
        assert await silent.at_eof()
        assert await rt.wait_stopped() == 0


async def test_half_sent_request() -> None:
    """7."""
    async with runtime() as rt:
        idle = await idle_keep_alive(rt.port)
        half = await idle_keep_alive(rt.port)
        protocol = server_side(rt, half)
        await until(lambda: protocol.idle_for(time.monotonic()) is not None)
        half.writer.write(b"GET /fast HTTP/1.1\r\nHost: t\r\n")
        await until(lambda: protocol.idle_for(time.monotonic()) is None)  # its bytes are in
        rt.stop("test")
        assert await idle.at_eof()
        half.writer.write(b"\r\n")
        response = await half.read_response()
        assert response.status == 200 and response.closes
        assert await rt.wait_stopped() == 0


async def test_handler_outliving_its_client() -> None:
    """8."""
    app = basic()
    async with runtime(app) as rt:
        conn = await Connection.open(rt.port)
        conn.send("GET", "/slow?s=0.5")
        tracker = rt._started.tracker
        await until(lambda: len(tracker.requests_in_flight()) == 1)
        conn.writer.close()
        await until(lambda: not tracker.connections)
        [orphan] = tracker.requests_in_flight()
        assert orphan.path == "/slow" and not orphan.done
        rt.stop("test")
        assert await rt.wait_stopped() == 0
        assert app[graceful.STATE]["served"] == 1


async def test_websocket_after_a_keep_alive_request() -> None:
    """9."""
    async with runtime() as rt:
        reader, writer = await asyncio.open_connection("127.0.0.1", rt.port)
        writer.write(b"GET /fast HTTP/1.1\r\nHost: t\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        await websocket_gets_1001(rt, reader, writer)


async def websocket_gets_1001(rt: graceful.Runtime, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
    """Open a websocket on this connection; the stop closes it with 1001 and completes."""
    writer.write(WS_HANDSHAKE)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101")
    tracker = rt._started.tracker
    await until(lambda: len(tracker.websockets) == 1)
    rt.stop("test")
    frame = await asyncio.wait_for(reader.readexactly(4), 5)
    assert frame[0] == 0x88 and int.from_bytes(frame[2:4], "big") == 1001
    writer.close()
    assert await rt.wait_stopped() == 0


class CustomRequest(web.Request):
    pass


with warnings.catch_warnings():  # aiohttp discourages subclassing Application; users do it
    warnings.simplefilter("ignore", DeprecationWarning)

    class OwnFactoryApp(web.Application):
        """An app that makes its requests itself."""

        def _make_request(self, message, payload, protocol, writer, task, _cls=CustomRequest):
            return super()._make_request(message, payload, protocol, writer, task, _cls)


async def test_application_with_a_request_factory_of_its_own() -> None:
    """10."""
    seen: list[web.BaseRequest] = []

    @web.middleware
    async def noting(request: web.Request, handler):
        seen.append(request)
        return await handler(request)

    app = OwnFactoryApp(middlewares=[noting])
    _routes(app)
    async with runtime(app) as rt:
        tracker = rt._started.tracker
        ws_reader, ws_writer = await asyncio.open_connection("127.0.0.1", rt.port)
        ws_writer.write(WS_HANDSHAKE)
        head = await asyncio.wait_for(ws_reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101")
        await until(lambda: len(tracker.websockets) == 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", rt.port)
        writer.write(b"GET /slow?s=0.3 HTTP/1.1\r\nHost: t\r\n\r\n")
        await until(lambda: len(seen) == 2)  # the websocket's request, then this one
        assert [type(request) for request in seen] == [websocket_class(CustomRequest),
                                                        tracked_class(CustomRequest)]
        assert all(isinstance(request, CustomRequest) for request in seen)
        rt.stop("test")
        frame = await asyncio.wait_for(ws_reader.readexactly(4), 5)
        assert frame[0] == 0x88 and int.from_bytes(frame[2:4], "big") == 1001
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
        writer.close()
        ws_writer.close()
        assert await rt.wait_stopped() == 0
