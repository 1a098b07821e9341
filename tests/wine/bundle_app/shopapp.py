"""The app the Wine suite bundles into one executable, written the way a user's project is:
its own dependency (tinydep, a local package under vendor/ with a data file), state created
in the factory, a sub-app, a middleware, and a handler that keeps a counter in the
checkpoint."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import tinydep
from aiohttp import web

import graceful

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def served_by(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers["X-Served-By"] = "shopapp"
    return response


async def price(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "0")))  # a request a stop must wait for
    item = request.match_info["item"]
    state = request.config_dict[graceful.STATE]
    state["served"] = state.get("served", 0) + 1
    return web.Response(text=f"{item} {request.config_dict['prices'][item]}\n")


def create_app() -> web.Application:
    app = web.Application(middlewares=[served_by])
    app["prices"] = tinydep.load_prices()  # read from tinydep's package data
    api = web.Application()
    api.router.add_get("/price/{item}", price)
    app.add_subapp("/api", api)
    return app
