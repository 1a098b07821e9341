"""The app behind `python -m bench.checkpoint_latency`: a state of $STATE_MB megabytes of
records that never changes, and one fast route."""

from __future__ import annotations

import os

from aiohttp import web

import graceful


async def fast(request: web.Request) -> web.Response:
    return web.Response(text="fast\n")


async def fill(app: web.Application) -> None:
    records = int(float(os.environ.get("STATE_MB", "20")) * 1e6 / 200)
    app[graceful.STATE]["users"] = {
        f"user{i:08d}": {"name": "x" * 140, "n": i, "tags": ["a", "b"]} for i in range(records)}


def make() -> web.Application:
    app = web.Application()
    app.router.add_get("/fast", fast)
    app.on_startup.append(fill)
    return app
