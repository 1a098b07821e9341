"""--reload, for development: a saved Python file restarts the workers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.loadgen import get

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


async def test_a_save_restarts_without_cutting_the_request_in_flight(serve, tmp_path: Path):
    """1. A request in flight during a save completes (uvicorn's --reload kills it); the
    next one is answered by the new code. 2. A save with a syntax error leaves the workers
    serving as they were, the error shown in restart.failed."""
    (tmp_path / "devapp.py").write_text(APP.format(version="v1"))
    server = serve("devapp:create_app", "--reload", "--app-dir", str(tmp_path))
    await asyncio.to_thread(server.wait_for, "reload.watching")
    conn = (await server.hold("/?s=1.5")).conn
    (tmp_path / "devapp.py").write_text(APP.format(version="v2"))
    await asyncio.to_thread(server.wait_for, "restart.done", 30)
    response = await conn.read_response()
    assert (response.status, response.body) == (200, b"v1")
    assert await get(server.port, "/") == (200, "v2")

    (tmp_path / "devapp.py").write_text(APP.format(version="v3") + "\ndef broken(:\n")
    failed = await asyncio.to_thread(server.wait_for, "restart.failed", 30)
    assert any("SyntaxError" in line for line in failed["last_lines"]), failed["last_lines"]
    assert await get(server.port, "/") == (200, "v2")
    assert server.running()
