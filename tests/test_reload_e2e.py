"""--reload, for development: a save restarts through the hand-over."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from tests.test_restart_e2e import ended, get, successors  # noqa: F401  (fixture)

APP = '''
import asyncio
from aiohttp import web

VERSION = {version!r}


async def slow(request):
    await asyncio.sleep(float(request.query.get("s", "0")))
    return web.Response(text=VERSION)


def create_app():
    app = web.Application()
    app.router.add_get("/", slow)
    return app
'''


async def test_a_save_restarts_without_cutting_the_request_in_flight(
        serve, successors, tmp_path: Path):  # noqa: F811
    """1. A request in flight during a save completes (uvicorn's --reload kills it); the
    next one is answered by the new code. 2. A save with a syntax error leaves the serving
    process as it was, the error shown in restart.failed."""
    (tmp_path / "devapp.py").write_text(APP.format(version="v1"))
    server = serve("devapp:create_app", "--reload", "--app-dir", str(tmp_path))
    await asyncio.to_thread(server.wait_for, "reload.watching")
    conn = (await server.hold("/?s=1.5")).conn
    (tmp_path / "devapp.py").write_text(APP.format(version="v2"))
    ready = await asyncio.to_thread(server.wait_for, "restart.ready")
    successors.append(ready["successor_pid"])
    response = await conn.read_response()
    assert (response.status, response.body) == (200, b"v1")
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
    assert await get(server.port, "/") == (200, "v2")

    await asyncio.to_thread(server.wait_for, "reload.watching", 15)  # the successor's
    (tmp_path / "devapp.py").write_text(APP.format(version="v3") + "\ndef broken(:\n")
    failed = await asyncio.to_thread(server.wait_for, "restart.failed", 30)
    assert any("SyntaxError" in line for line in failed["last_lines"]), failed["last_lines"]
    successors.append(failed["successor_pid"])
    assert await get(server.port, "/") == (200, "v2")
    os.kill(successors[0], signal.SIGTERM)
    assert await ended(successors[0])
