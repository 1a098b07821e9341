"""A first app: `graceful serve hello:app`, then Ctrl+C while /slow?s=5 runs."""

import asyncio

from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello\n")


async def slow(request: web.Request) -> web.Response:
    seconds = float(request.query.get("s", "3"))
    await asyncio.sleep(seconds)  # a request the stop must wait for
    return web.Response(text=f"done after {seconds:g} s\n")


app = web.Application()
app.router.add_get("/", hello)
app.router.add_get("/slow", slow)
