"""A demo app: `graceful serve graceful.demo:factory`, then press Ctrl+C while /slow runs.

    GET  /             a greeting and the request counter (kept across restarts)
    GET  /slow?s=3     answers after s seconds (default 3): watch the drain wait for it
    POST /upload       reads the whole body and says how many bytes arrived
    GET  /ws           echoes websocket messages; closed with 1001 when stopping
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from graceful.lifecycle.appstate import STATE
from graceful.lifecycle.hooks import add_hook
from graceful.logs import get_logger

log = get_logger("graceful.demo")


async def index(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state["requests"] = state.get("requests", 0) + 1
    return web.json_response({"hello": "graceful", "requests": state["requests"]})


async def slow(request: web.Request) -> web.Response:
    try:
        seconds = float(request.query.get("s", "3"))
    except ValueError:
        raise web.HTTPBadRequest(text="s must be a number of seconds\n") from None
    await asyncio.sleep(min(max(seconds, 0), 600))
    state = request.app[STATE]
    state["requests"] = state.get("requests", 0) + 1
    return web.json_response({"slept_s": seconds, "requests": state["requests"]})


async def upload(request: web.Request) -> web.Response:
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
    return web.json_response({"received_bytes": size})


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type == web.WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


async def say_goodbye(app: web.Application) -> None:
    log.info("demo.goodbye", requests=app[STATE].get("requests", 0))


def factory() -> web.Application:
    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/slow", slow)
    app.router.add_post("/upload", upload)
    app.router.add_get("/ws", websocket)
    add_hook(app, say_goodbye)
    return app
