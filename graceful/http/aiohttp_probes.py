"""In-process probes of the aiohttp behaviours listed in aiohttp_internals.REQUIREMENTS.

Each probe drives aiohttp's own RequestHandler (not graceful's subclass) over a fake
transport on a private loop, and records in `failed` each behaviour that did not hold, by
its REQUIREMENTS name. Run by aiohttp_internals.check() (the canary), not at start.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web, web_app
from aiohttp.web_protocol import RequestHandler

from graceful.http import aiohttp_internals

WAITING = "_waiter is set while waiting for the next request"
IN_PROGRESS = "_request_in_progress is True while the handler runs"
PIPELINED = "_messages holds the pipelined requests behind the running one"
COUNT = "_request_count is 0 until a request is parsed"
FACTORY = ("_request_factory is read from the instance for each request, called (message, "
           "payload, protocol, writer, task)")
LOG_ACCESS = "log_access is called once per request, after its response is written"
PREPARE_HOOK = ("_prepare_hook runs before the headers are written, and a Connection: close "
                "set there is sent and closes the connection")
CLONE = "clone() keeps _protocol"
SWITCH = "a live request's __class__ can be switched to a subclass"
CURRENT = "_current_request is the request while its handler runs"
ANSWERING = ("start()'s local `request` is the request whose response is written after its "
             "handler returned")
UPGRADE = ("the upgrade flag is raised by data_received once an upgrade request is parsed, "
           "before the request is made")
PROBE_MATCH = "a route whose match info ignores add_app runs without the app's middlewares"
HANDLER_WAITER = "_handler_waiter is resolved when a cancelled handler has unwound"
TASK = "_task_handler is the connection's task, running while its handler runs"
FORCE_CLOSE = "force_close() on an idle connection closes its transport"
WS_CLOSE = "close() before prepare() raises RuntimeError"
WS_HANDSHAKE = ("a receive() pending when the close frame is sent by hand returns the "
                "client's close frame, without a second close frame sent")
CLEANUP_CTX = "cleanup_ctx runs as a bound method of a CleanupContext in on_startup"
MATCH = "_match(path) is not None for a path it routes, None otherwise"

TICKS = 50  # loop iterations a probe waits for aiohttp's connection task to get somewhere


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class ProbeHandler(RequestHandler):
    """Records each log_access call with what the transport held at that moment."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logged: list[tuple[str, bytes]] = []

    def log_access(self, request: web.BaseRequest, response: web.StreamResponse,
                   time: float | None) -> None:
        self.logged.append((request.path, bytes(self.transport.data)
                            if isinstance(self.transport, FakeTransport) else b""))
        super().log_access(request, response, time)


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode()


async def until(condition: Callable[[], Any]) -> bool:
    for _ in range(TICKS):
        if condition():
            return True
        await asyncio.sleep(0)
    return bool(condition())


async def connection(app: web.Application) -> tuple[web.AppRunner, ProbeHandler,
                                                     FakeTransport]:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    assert runner.server is not None
    handler = ProbeHandler(runner.server, loop=asyncio.get_running_loop(), access_log=None)
    transport = FakeTransport()
    handler.connection_made(transport)
    return runner, handler, transport


async def pipelined_requests(failed: dict[str, str]) -> None:
    """Two pipelined GETs: the first held until released, the second answered with
    Connection: close set by its request's _prepare_hook."""
    entered, release = asyncio.Event(), asyncio.Event()
    seen: dict[str, Any] = {}
    hooks: list[tuple[str, int]] = []

    class ProbeRequest(web.Request):
        pass

    # put on the class once the first request is made (graceful's hook is put on at the stop)
    def prepare_hook(self: web.Request, response: web.StreamResponse) -> Awaitable[None]:
        hooks.append((self.path, len(transport.data)))
        if self.path == "/second":
            response.force_close()
            response.headers["Connection"] = "close"
        return web.Request._prepare_hook(self, response)

    async def first(request: web.Request) -> web.Response:
        seen.update(in_progress=handler._request_in_progress, waiter=handler._waiter,
                    queued=len(handler._messages), count=handler._request_count,
                    task=handler._task_handler, written=len(transport.data),
                    logged=len(handler.logged), clone=request.clone()._protocol,
                    current=handler._current_request is request)
        cls = type(request)
        object.__setattr__(request, "__class__", type("Switched", (cls,), {}))
        seen["switched"] = isinstance(request, cls) and type(request) is not cls
        object.__setattr__(request, "__class__", cls)
        ProbeRequest._prepare_hook = prepare_hook  # type: ignore[method-assign]
        entered.set()
        await release.wait()
        return web.Response(text="first-done")

    async def second(request: web.Request) -> web.Response:
        return web.Response(text="second-done")

    app = web.Application()
    app.router.add_get("/first", first)
    app.router.add_get("/second", second)
    runner, handler, transport = await connection(app)
    calls: list[tuple[Any, ...]] = []
    factory = functools.partial(runner.server.request_factory,  # type: ignore[union-attr]
                                _cls=ProbeRequest)

    def recording_factory(*args: Any) -> web.BaseRequest:
        calls.append(args)
        return factory(*args)

    try:
        handler._request_factory = recording_factory
        if not await until(lambda: handler._waiter is not None):
            failed[WAITING] = "no _waiter on a new connection"
        if handler._request_count != 0:
            failed[COUNT] = f"_request_count is {handler._request_count} before any request"
        handler.data_received(get("/first") + get("/second"))
        await asyncio.wait_for(entered.wait(), 2)
        if not seen["in_progress"]:
            failed[IN_PROGRESS] = "False inside the handler"
        if seen["waiter"] is not None:
            failed[WAITING] = "_waiter set while a handler runs"
        if seen["queued"] != 1:
            failed[PIPELINED] = f"{seen['queued']} queued behind the running request"
        if seen["count"] == 0:
            failed[COUNT] = "still 0 with a request running"
        if not isinstance(seen["task"], asyncio.Task) or seen["task"].done():
            failed[TASK] = f"it is {seen['task']!r}"
        if seen["clone"] is not handler:
            failed[CLONE] = f"clone's _protocol is {seen['clone']!r}"
        if not seen["switched"]:
            failed[SWITCH] = "the class did not change"
        if not seen["current"]:
            failed[CURRENT] = "it is not the running request"
        if len(calls) != 1 or len(calls[0]) != 5 or calls[0][2] is not handler \
                or not hasattr(calls[0][0], "upgrade"):
            failed[FACTORY] = f"called {len(calls)} times with {[len(c) for c in calls]} args"
        if seen["written"] or seen["logged"]:
            failed[LOG_ACCESS] = "called, or bytes written, before the handler returned"
        release.set()
        await until(lambda: transport.closed and len(handler.logged) >= 2)
        data = bytes(transport.data)
        logged = handler.logged
        if [path for path, _ in logged] != ["/first", "/second"]:
            failed[LOG_ACCESS] = f"called for {[path for path, _ in logged]}"
        elif not logged[0][1].endswith(b"first-done") or not logged[1][1].endswith(
                b"second-done"):
            failed[LOG_ACCESS] = "called before the response was written"
        first_end = data.index(b"first-done") + len(b"first-done") if b"first-done" in data \
            else -1
        if hooks != [("/first", 0), ("/second", first_end)]:
            failed[PREPARE_HOOK] = f"called as {hooks} (path, bytes written before)"
        elif b"connection: close" not in data[first_end:].lower() or not transport.closed:
            failed[PREPARE_HOOK] = "Connection: close set in the hook not sent or not honoured"
        if len(calls) != 2:
            failed[FACTORY] = f"called {len(calls)} times for 2 requests"
    finally:
        handler.connection_lost(None)
        await runner.cleanup()


async def keep_alive_then_idle(failed: dict[str, str]) -> None:
    """A keep-alive request, then idle: _waiter is set again; force_close() closes it."""
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner, handler, transport = await connection(app)
    try:
        await until(lambda: handler._waiter is not None)
        handler.data_received(get("/"))
        if not await until(lambda: handler.logged and handler._waiter is not None):
            failed.setdefault(WAITING, "no _waiter again after a keep-alive response")
        if handler._request_in_progress or handler._messages:
            failed.setdefault(IN_PROGRESS, "still True once the response is written")
        handler.force_close()
        if not await until(lambda: transport.closed):
            failed[FORCE_CLOSE] = "the transport stayed open"
    finally:
        handler.connection_lost(None)
        await runner.cleanup()


async def cancelled_handler(failed: dict[str, str]) -> None:
    """graceful's cancel_request: _handler_waiter, close(), cancel the connection's task."""
    entered = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application()
    app.router.add_get("/", hang)
    runner, handler, _ = await connection(app)
    try:
        await until(lambda: handler._waiter is not None)
        handler.data_received(get("/"))
        await asyncio.wait_for(entered.wait(), 2)
        waiter = handler._loop.create_future()
        handler._handler_waiter = waiter
        handler.close()
        assert handler._task_handler is not None
        handler._task_handler.cancel()
        if not await until(waiter.done) or handler._request_in_progress:
            failed[HANDLER_WAITER] = "not resolved after the handler was cancelled"
    finally:
        handler.connection_lost(None)
        await runner.cleanup()


async def websocket_and_app(failed: dict[str, str]) -> None:
    try:
        await web.WebSocketResponse().close()
        failed[WS_CLOSE] = "close() returned"
    except RuntimeError:
        pass

    async def context(app: web.Application) -> Any:
        yield

    async def item(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application()
    app.cleanup_ctx.append(context)
    if not any(isinstance(getattr(callback, "__self__", None), web_app.CleanupContext)
               for callback in app.on_startup):
        failed[CLEANUP_CTX] = "no on_startup callback bound to a CleanupContext"
    resource = app.router.add_get("/items/{id}", item).resource
    if resource is None or resource._match("/items/1") is None \
            or resource._match("/other") is not None:
        failed[MATCH] = "a dynamic resource does not match as expected"


async def upgrade_request(failed: dict[str, str]) -> None:
    """A websocket handshake: the flag is up when data_received returns, and the request is
    made only after (so a factory switched then makes it)."""
    made: list[Any] = []

    async def ws(request: web.Request) -> web.StreamResponse:
        return web.Response(text="no")

    app = web.Application()
    app.router.add_get("/ws", ws)
    runner, handler, _ = await connection(app)
    factory = handler._request_factory
    assert factory is not None

    def recording(*args: Any) -> web.BaseRequest:
        made.append(args)
        return factory(*args)

    handler._request_factory = recording
    try:
        await until(lambda: handler._waiter is not None)
        if aiohttp_internals.upgrading(handler):
            failed[UPGRADE] = "raised before any request"
        handler.data_received(b"GET /ws HTTP/1.1\r\nHost: probe\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        if not aiohttp_internals.upgrading(handler):
            failed[UPGRADE] = "not raised once the handshake request is parsed"
        elif made:
            failed[UPGRADE] = "the request was made before data_received returned"
        elif not await until(lambda: made):
            failed[UPGRADE] = "the request was never made"
    finally:
        handler.connection_lost(None)
        await runner.cleanup()


async def probe_route(failed: dict[str, str]) -> None:
    """graceful's health probe on an app with a middleware: answered without it."""
    from graceful.http.health import Health  # its _ProbeMatch is what is probed

    through: list[str] = []

    @web.middleware
    async def deny(request: web.Request, handler: Any) -> web.StreamResponse:
        through.append(request.path)
        raise web.HTTPUnauthorized()

    async def anything(request: web.Request) -> web.Response:
        return web.Response()

    app = web.Application(middlewares=[deny])
    app.router.add_get("/{tail:.*}", anything)
    Health("/livez", "/readyz", is_ready=lambda: True, phase=lambda: "ready").install(app)
    runner, handler, transport = await connection(app)
    try:
        await until(lambda: handler._waiter is not None)
        handler.data_received(get("/livez") + get("/other"))
        await until(lambda: len(handler.logged) >= 2)
        data = bytes(transport.data)
        if not data.startswith(b"HTTP/1.1 200") or through != ["/other"]:
            failed[PROBE_MATCH] = (f"the probe went through the middleware ({through}), "
                                   f"answered {data[:12]!r}")
    finally:
        handler.connection_lost(None)
        await runner.cleanup()


async def response_after_return(failed: dict[str, str]) -> None:
    """A 1 MB response to a connection that stopped taking writes: its handler has
    returned, aiohttp writes (and waits) in finish_response; which request is that?"""
    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1_000_000)

    app = web.Application()
    app.router.add_get("/big", big)
    runner, handler, transport = await connection(app)
    try:
        handler.pause_writing()  # the client reads nothing: aiohttp's drain waits
        handler.data_received(get("/big"))
        writing = await until(lambda: handler._current_request is None
                              and handler._request_in_progress and transport.data)
        request = aiohttp_internals.request_being_answered(handler)
        if not writing or request is None or request.path != "/big":
            failed[ANSWERING] = (f"found {request!r} (writing after return: "
                                 f"{bool(writing)})")
        handler.resume_writing()
    finally:
        handler.connection_lost(None)
        await runner.cleanup()


async def websocket_close_handshake(failed: dict[str, str]) -> None:
    """The usual `async for` handler: our close frame sent while its receive() is pending;
    the client's close frame then ends its loop, and nothing more is written."""
    opened: list[web.WebSocketResponse] = []
    received: list[Any] = []

    async def chat(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        opened.append(ws)
        async for message in ws:
            received.append(message.type)
        received.append("ended")
        return ws

    app = web.Application()
    app.router.add_get("/ws", chat)
    runner, handler, transport = await connection(app)
    try:
        await until(lambda: handler._waiter is not None)
        handler.data_received(b"GET /ws HTTP/1.1\r\nHost: probe\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        if not await until(lambda: opened and aiohttp_internals.receiving(opened[0])):
            failed[WS_HANDSHAKE] = "the handler's receive() was never seen pending"
            return
        start = len(transport.data)
        await aiohttp_internals.send_close(opened[0], 1001, b"bye")
        sent = len(transport.data)
        if transport.data[start:start + 1] != b"\x88":
            failed[WS_HANDSHAKE] = "no close frame was written"
            return
        mask = b"\x01\x02\x03\x04"  # the client's close frame, code 1000, masked
        handler.data_received(b"\x88\x82" + mask + bytes(
            b ^ mask[i] for i, b in enumerate((1000).to_bytes(2, "big"))))
        if not await until(lambda: "ended" in received):
            failed[WS_HANDSHAKE] = f"the handler's loop did not end: it received {received}"
        elif len(transport.data) != sent:
            failed[WS_HANDSHAKE] = "more was written after our close frame"
        elif opened[0].close_code != 1000:
            failed[WS_HANDSHAKE] = f"close_code is {opened[0].close_code}, not the client's"
    finally:
        handler.connection_lost(None)
        await runner.cleanup()


PROBES = (pipelined_requests, keep_alive_then_idle, cancelled_handler, websocket_and_app,
          upgrade_request, probe_route, response_after_return, websocket_close_handshake)
