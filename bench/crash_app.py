"""The app behind `python -m bench crash`: every `GET /hit` adds one to a counter in the
checkpointed state and answers the new value; `GET /hits` answers it unchanged."""

from __future__ import annotations

from aiohttp import web

import graceful


async def hit(request: web.Request) -> web.Response:
    state = graceful.state(request)
    state["hits"] = state.get("hits", 0) + 1
    return web.Response(text=str(state["hits"]))


async def hits(request: web.Request) -> web.Response:
    return web.Response(text=str(graceful.state(request).get("hits", 0)))


def make() -> web.Application:
    app = web.Application()
    app.router.add_get("/hit", hit)
    app.router.add_get("/hits", hits)
    app.router.add_get("/", hits)
    return app
