"""The app a browser holds open through restarts (tests/test_browser_e2e.py): the stream of
examples/sse.py, a websocket, a plain route for a fetch loop, and the page that uses all
three (page.html beside this file)."""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import web

from examples import sse

PAGE = Path(__file__).with_name("page.html")


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE)


async def pid(request: web.Request) -> web.Response:
    """Which worker answered: the page sees its fetches move to the new workers."""
    return web.Response(text=str(os.getpid()))


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Says which worker holds it, then echoes."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str(f"worker {os.getpid()}")
    async for message in ws:
        await ws.send_str(message.data)
    return ws


def create_app() -> web.Application:
    app = sse.create_app()
    app.router.add_get("/", page)
    app.router.add_get("/pid", pid)
    app.router.add_get("/ws", websocket)
    return app
