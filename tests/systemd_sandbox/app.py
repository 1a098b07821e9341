"""The application the real-systemd tests serve: installed as /opt/app/app.py in the sandbox,
so that the shipped unit's `graceful serve app:create_app` runs it unchanged.

- POST /count adds one to a counter kept in `app[graceful.STATE]` (checkpointed) and answers
  the new value;
- GET /slow?s=3 sends its headers and a first line at once (the client then knows the
  handler runs), sleeps, and ends with `done`: answered means both lines arrived;
- GET /pid answers the pid of the process that serves it.
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

import graceful


async def count(request: web.Request) -> web.Response:
    state = request.app[graceful.STATE]
    state["count"] = state.get("count", 0) + 1
    return web.Response(text=f"{state['count']}\n")


async def slow(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"started\n")
    await asyncio.sleep(float(request.query.get("s", "3")))
    await response.write(b"done\n")
    await response.write_eof()
    return response


async def pid(request: web.Request) -> web.Response:
    return web.Response(text=f"{os.getpid()}\n")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/count", count)
    app.router.add_get("/slow", slow)
    app.router.add_get("/pid", pid)
    return app
