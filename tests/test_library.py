"""Embedding: `async with graceful.Runtime(...)` and the blocking `graceful.run`.

1. The runtime starts READY, serves, turns readiness off at stop, runs hooks, and reports
   the exit code; `stop()` works from another thread.
2. The README example runs as a script and stops cleanly on SIGTERM, keeping its state.
3. `Runtime.port` before `start()`, or with no TCP listener, says so.
4. `graceful.run()` off the main thread is refused (it could not catch a stop signal).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import aiohttp
import pytest
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


async def test_port_before_start_says_why(tmp_path):
    """3. `Runtime.port` before `start()`, or on a runtime with no TCP listener: an error
    that says so, not an IndexError."""
    runtime = graceful.Runtime(web.Application(), graceful.Config(port=0))
    with pytest.raises(graceful.GracefulError, match=r"start\(\)"):
        runtime.port  # noqa: B018
    sock = str(tmp_path / "app.sock")
    async with graceful.Runtime(web.Application(),
                                graceful.Config(bind=(f"unix:{sock}",))) as unix_only:
        assert unix_only.addresses == [sock]
        with pytest.raises(graceful.GracefulError, match="no TCP port"):
            unix_only.port  # noqa: B018
        unix_only.stop("test")
        assert await unix_only.wait_stopped() == graceful.ExitCode.OK


THREAD_SCRIPT = """
import threading, graceful
from aiohttp import web

outcome = []
def serve():
    try:
        outcome.append(graceful.run(web.Application(), port=0, log_format="json"))
    except graceful.GracefulError as err:
        outcome.append(f"{type(err).__name__}: {err}")
thread = threading.Thread(target=serve, daemon=True)
thread.start()
thread.join(5)  # served on: the refusal did not come
print(outcome)
"""


def test_run_on_another_thread_is_refused():
    """4. `graceful.run()` on a thread other than the main one cannot set stop handlers (a
    SIGTERM would kill the process with 143): refused at once, saying what to do instead."""
    done = subprocess.run([sys.executable, "-c", THREAD_SCRIPT], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ConfigError" in done.stdout and "main thread" in done.stdout, done.stdout
    assert "bridge=None" in done.stdout, done.stdout
