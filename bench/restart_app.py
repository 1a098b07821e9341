"""The bench app for the restart runs: /work as in bench/apps.py, and every answered /work
counts in the state the checkpoint keeps, so that the count can be checked against the 200s
the clients received."""

from __future__ import annotations

from aiohttp import web

import graceful
from bench.apps import aiohttp_app


@web.middleware
async def _count(request: web.Request, handler: object) -> web.StreamResponse:
    response = await handler(request)  # type: ignore[operator]
    if request.path == "/work":
        state = graceful.state(request)
        state["count"] = state.get("count", 0) + 1
    return response


def counting_app() -> web.Application:
    app = aiohttp_app()
    app.middlewares.append(_count)
    return app
