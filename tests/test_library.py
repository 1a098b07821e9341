"""Embedding: `async with graceful.Runtime(...)` and the blocking `graceful.run`.

1. The runtime starts READY, serves, turns readiness off at stop, runs hooks, and reports
   the exit code; `stop()` works from another thread.
2. The README example runs as a script and stops cleanly on SIGTERM, keeping its state.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import aiohttp
from aiohttp import web

import graceful
from graceful import checkpoint as ckpt
from tests.conftest import ROOT


async def test_runtime_in_async_code(tmp_path):
    """1."""
    gate, entered = asyncio.Event(), asyncio.Event()
    seen_ready: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        entered.set()
        await gate.wait()
        request.app[graceful.STATE]["done"] = True
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/", handler)
    hooks_ran: list[str] = []
    config = graceful.Config(port=0, checkpoint=tmp_path / "s.json", pre_stop_delay=0.5)
    async with graceful.Runtime(app, config) as runtime, aiohttp.ClientSession() as session:
        runtime.add_hook(lambda app: hooks_ran.append("mine"), name="mine")
        base = f"http://127.0.0.1:{runtime.port}"
        assert runtime.phase is graceful.Phase.READY
        pending = asyncio.ensure_future(session.get(f"{base}/"))
        await asyncio.wait_for(entered.wait(), 15)
        threading.Thread(target=runtime.stop, args=("test",)).start()
        while runtime.phase is graceful.Phase.READY:
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as fresh, fresh.get(f"{base}/readyz") as ready:
            seen_ready.append(ready.status)
        gate.set()
        async with await pending as response:
            assert response.status == 200 and response.headers["Connection"] == "close"
        assert await runtime.wait_stopped() == graceful.ExitCode.OK
    assert seen_ready == [503]
    assert hooks_ran == ["mine"]
    assert ckpt.read(tmp_path / "s.json").state == {"done": True}


def test_readme_example_runs_and_stops(tmp_path):
    """2."""
    from tests.conftest import ServerProcess

    env = {**os.environ, "PORT": "0", "CHECKPOINT": str(tmp_path / "hits.json")}
    proc = subprocess.Popen([sys.executable, "examples/embed.py"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        server = ServerProcess.__new__(ServerProcess)
        ServerProcess._attach(server, proc)
        port = server.wait_for("server.started")["port"]

        async def hit() -> str:
            async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}/"
            ) as response:
                return await response.text()

        assert asyncio.run(hit()) == "hello #1\n"
        server.signal()
        assert server.wait() == 0
        assert "closing the pool" in proc.stdout.read()
        assert ckpt.read(tmp_path / "hits.json").state == {"hits": 1}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
