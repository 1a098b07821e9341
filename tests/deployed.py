"""An application as deployed: its release (the file named by RELEASE_FILE) is read when the
module is imported, as new code is, so a test can deploy a broken release and send SIGHUP.

Releases: any text is served at /release; "import-error" raises at import, "startup-error"
raises in on_startup, "exit" exits in on_startup, "hang" never finishes on_startup, "slow"
takes a second in on_startup.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

import graceful

RELEASE = Path(os.environ["RELEASE_FILE"]).read_text().strip()
if RELEASE == "import-error":
    raise ImportError("release import-error: cannot import name 'Settings' from 'config'")


async def release(request: web.Request) -> web.Response:
    return web.Response(text=f"{RELEASE} {os.getpid()}\n")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "0.3")))
    return web.Response(text=f"{RELEASE} {os.getpid()}\n")


async def upload(request: web.Request) -> web.Response:
    """Takes a body whole, for as long as the client takes to send it."""
    size = len(await request.read())
    return web.Response(text=f"{RELEASE} {os.getpid()} {size}\n")


async def count(request: web.Request) -> web.Response:
    """Counts the requests it answered, in the state the checkpoint keeps."""
    state = graceful.state(request)
    await asyncio.sleep(float(request.query.get("s", "0.05")))
    state["count"] = state.get("count", 0) + 1
    return web.Response(text=f"{state['count']}\n")


async def connect_database(app: web.Application) -> None:
    if RELEASE == "startup-error":
        raise RuntimeError("release startup-error: the database refused the connection")
    if RELEASE == "exit":
        os._exit(7)
    if RELEASE == "hang":
        await asyncio.Event().wait()
    if RELEASE == "slow":
        await asyncio.sleep(1.0)


def create_app() -> web.Application:
    app = web.Application()
    app.on_startup.append(connect_database)
    app.router.add_get("/release", release)
    app.router.add_get("/slow", slow)
    app.router.add_get("/count", count)
    app.router.add_post("/upload", upload)
    return app
