"""The one application every server in the bench serves, as aiohttp and as raw ASGI.

Routes (same behaviour in both flavours):
  GET  /work?ms=M     sleeps M milliseconds, answers 200 "ok"
  POST /upload        reads the whole body, answers 200 with its size
  GET  /events        server-sent events, one every 100 ms, until the client goes away;
                      in aiohttp_app_stopping, until graceful.stopping(request) fires, then
                      a last "bye" event and the end of the chunked body
Any other path answers 200 "ready" (readiness probes of the harness).

When the environment variable BENCH_SEEN_LOG names a file, each request carrying an
``x-req`` header appends that id to the file the moment its handler starts. The harness
reads the file after the run: a request the application saw and never answered is
*lost*; one it never saw, on a keep-alive connection the server closed, is a
*keep-alive race*. Each id is one ``os.write`` on an O_APPEND descriptor, so it survives
forks (gunicorn) and is on disk even if the process is killed.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web

SEEN_ENV = "BENCH_SEEN_LOG"
_seen_fd: int | None = None


def _seen(req_id: str | None) -> None:
    global _seen_fd
    path = os.environ.get(SEEN_ENV)
    if not req_id or not path:
        return
    if _seen_fd is None:
        _seen_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_seen_fd, f"{req_id}\n".encode())


# --- aiohttp -------------------------------------------------------------------------


async def _work(request: web.Request) -> web.Response:
    _seen(request.headers.get("x-req"))
    ms = float(request.query.get("ms", "0"))
    if ms > 0:
        await asyncio.sleep(ms / 1000)
    return web.Response(text="ok")


async def _upload(request: web.Request) -> web.Response:
    _seen(request.headers.get("x-req"))
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
    return web.Response(text=str(size))


EVENT_EVERY_S = 0.1


async def _events(request: web.Request) -> web.StreamResponse:
    """Never ends by itself: what an SSE endpoint looks like without the stopping API."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    tick = 0
    while True:
        await response.write(f"data: tick {tick}\n\n".encode())
        tick += 1
        await asyncio.sleep(EVENT_EVERY_S)


async def _events_stopping(request: web.Request) -> web.StreamResponse:
    """The same stream, ending cleanly when the stop begins (graceful.stopping)."""
    import graceful

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    async for tick in graceful.stopping(request).every(EVENT_EVERY_S):
        await response.write(f"data: tick {tick}\n\n".encode())
    await response.write(b"event: bye\ndata: server stopping\n\n")
    await response.write_eof()
    return response


async def _ready(request: web.Request) -> web.Response:
    return web.Response(text="ready")


def aiohttp_app() -> web.Application:
    """Factory for graceful, web.run_app and gunicorn's aiohttp worker."""
    app = web.Application()
    app.router.add_get("/work", _work)
    app.router.add_post("/upload", _upload)
    app.router.add_get("/events", _events)
    app.router.add_get("/", _ready)
    return app


def aiohttp_app_stopping() -> web.Application:
    """aiohttp_app whose /events uses graceful.stopping (the stream scenario)."""
    import graceful

    app = web.Application()
    app.router.add_get("/work", _work)
    app.router.add_post("/upload", _upload)
    app.router.add_get("/events", _events_stopping)
    app.router.add_get("/", _ready)
    graceful.stopping(app)  # fires with on_shutdown under run_app and gunicorn's worker
    return app


async def aiohttp_app_async() -> web.Application:
    """gunicorn's aiohttp worker wants an Application or a coroutine returning one."""
    return aiohttp_app()


# --- ASGI (uvicorn, hypercorn, granian, gunicorn + uvicorn worker) -------------------

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _query_ms(scope: Scope) -> float:
    for part in bytes(scope.get("query_string", b"")).decode().split("&"):
        key, _, value = part.partition("=")
        if key == "ms" and value:
            return float(value)
    return 0.0


async def _respond(send: Send, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path, method = scope["path"], scope["method"]
    if path == "/work" and method == "GET":
        _seen(_header(scope, b"x-req"))
        ms = _query_ms(scope)
        if ms > 0:
            await asyncio.sleep(ms / 1000)
        await _respond(send, b"ok")
    elif path == "/upload" and method == "POST":
        _seen(_header(scope, b"x-req"))
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        await _respond(send, str(size).encode())
    elif path == "/events" and method == "GET":
        await _asgi_events(receive, send)
    else:
        await _respond(send, b"ready")


async def _asgi_events(receive: Receive, send: Send) -> None:
    """SSE until the client goes away (http.disconnect), as sse-starlette does."""
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    watcher = asyncio.ensure_future(watch())
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    tick = 0
    try:
        while not gone.is_set():
            await send({"type": "http.response.body", "body": f"data: tick {tick}\n\n".encode(),
                        "more_body": True})
            tick += 1
            await asyncio.sleep(EVENT_EVERY_S)
    finally:
        watcher.cancel()
