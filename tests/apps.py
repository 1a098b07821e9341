"""Applications the end-to-end tests serve with the real CLI."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

import graceful


async def slow(request: web.Request) -> web.Response:
    seconds = float(request.query.get("s", "1"))
    await asyncio.sleep(seconds)
    state = request.app[graceful.STATE]
    state["served"] = state.get("served", 0) + 1
    return web.Response(text=f"slept {seconds}\n")


async def fast(request: web.Request) -> web.Response:
    return web.Response(text="fast\n")


async def upload(request: web.Request) -> web.Response:
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
    return web.Response(text=f"{size}\n")


async def stubborn(request: web.Request) -> web.Response:
    """Swallows its cancellation: the runtime must exit anyway."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


async def counter(request: web.Request) -> web.Response:
    state = request.app[graceful.STATE]
    state["count"] = state.get("count", 0) + 1
    state.setdefault("log", []).append(state["count"])
    return web.Response(text=f"{state['count']}\n")


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        await ws.send_str(message.data)
    return ws


async def stream(request: web.Request) -> web.StreamResponse:
    """Ten chunks, 0.1 s apart: a streaming response the stop finds in progress."""
    response = web.StreamResponse()
    await response.prepare(request)
    for index in range(10):
        await response.write(f"chunk {index}\n".encode())
        await asyncio.sleep(0.1)
    await response.write_eof()
    return response


def _routes(app: web.Application) -> web.Application:
    app.router.add_get("/slow", slow)
    app.router.add_get("/fast", fast)
    app.router.add_post("/upload", upload)
    app.router.add_get("/stubborn", stubborn)
    app.router.add_get("/count", counter)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/stream", stream)
    return app


def basic() -> web.Application:
    return _routes(web.Application())


async def async_factory() -> web.Application:
    return _routes(web.Application())


application = _routes(web.Application())
not_an_app = 42


def returns_wrong_type() -> object:
    return "not an app"


def _trace(line: str) -> None:
    """Hooks write their order to $TRACE_FILE, for the test to read."""
    with Path(os.environ["TRACE_FILE"]).open("a") as f:
        f.write(line + "\n")


def with_hooks() -> web.Application:
    """Hooks registered a, b (hangs), c (raises), d: run d, c, b, a; exit code 5."""
    app = basic()

    async def hook_a(app: web.Application) -> None:
        _trace("a")

    async def hook_b(app: web.Application) -> None:
        _trace("b")
        await asyncio.sleep(3600)

    def hook_c(app: web.Application) -> None:
        _trace("c")
        raise RuntimeError("hook c failed")

    async def hook_d(app: web.Application) -> None:
        _trace("d")

    async def on_shutdown(app: web.Application) -> None:
        _trace("on_shutdown")

    async def on_cleanup(app: web.Application) -> None:
        _trace("on_cleanup")

    graceful.add_hook(app, hook_a)
    graceful.add_hook(app, hook_b, timeout=0.5)
    graceful.add_hook(app, hook_c)
    graceful.add_hook(app, hook_d)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app


def _basic_starting_with(*steps: Callable[[web.Application], Awaitable[None]]
                         ) -> web.Application:
    app = basic()
    app.on_startup.extend(steps)
    return app


def failing_startup() -> web.Application:
    async def boom(app: web.Application) -> None:
        raise RuntimeError("database unreachable")

    return _basic_starting_with(boom)


def slow_startup() -> web.Application:
    """on_startup waits until the test signals; says so on stderr first."""
    async def wait(app: web.Application) -> None:
        print("slow_startup: waiting", file=sys.stderr, flush=True)
        await asyncio.sleep(3600)

    return _basic_starting_with(wait)


def shadows_readyz() -> web.Application:
    app = basic()
    app.router.add_get("/readyz", fast)
    return app


async def big(request: web.Request) -> web.StreamResponse:
    """50 MB, for a client that never reads it."""
    response = web.StreamResponse()
    await response.prepare(request)
    chunk = b"x" * 65536
    for _ in range(800):
        await response.write(chunk)
    await response.write_eof()
    return response


def _basic_with_route(path: str, handler: Any) -> web.Application:
    app = basic()
    app.router.add_get(path, handler)
    return app


def with_big() -> web.Application:
    return _basic_with_route("/big", big)


def hanging_startup() -> web.Application:
    async def connect_database(app: web.Application) -> None:
        await asyncio.sleep(3600)

    async def after(app: web.Application) -> None:
        _trace("after")

    return _basic_starting_with(connect_database, after)


def big_state() -> web.Application:
    """State of a few MB, so that checkpoint writes take a while."""
    app = basic()

    async def fill(app: web.Application) -> None:
        state = app[graceful.STATE]
        state["blob"] = ["y" * 1000] * 4000
        state["gen"] = state.get("gen", 0) + 1

    app.on_startup.append(fill)
    return app


@web.middleware
async def _forwarded(request: web.Request, handler: Any) -> web.StreamResponse:
    """What X-Forwarded middlewares do: hand the handler a clone of the request."""
    return await handler(request.clone(remote="10.0.0.1"))


async def late_stream(request: web.Request) -> web.StreamResponse:
    """Prepares its response itself, after a while (the stop comes in between)."""
    await asyncio.sleep(float(request.query.get("s", "0.5")))
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"data: done\n\n")
    await response.write_eof()
    return response


def with_forwarded() -> web.Application:
    app = _routes(web.Application(middlewares=[_forwarded]))
    app.router.add_get("/late-stream", late_stream)
    return app


async def polite_stream(request: web.Request) -> web.StreamResponse:
    """Streams until cancelled, then ends its response cleanly and returns."""
    response = web.StreamResponse()
    await response.prepare(request)
    try:
        while True:
            await response.write(b"tick\n")
            await asyncio.sleep(0.05)
    except asyncio.CancelledError:
        await response.write_eof()
    return response


def with_polite_stream() -> web.Application:
    return _basic_with_route("/polite-stream", polite_stream)


# -- the checkpoint as users write it (tests/test_checkpoint_*_e2e.py) -------------------


def own_state() -> web.Application:
    """The factory creates the state itself and keeps a reference to it (issue 17, 1)."""
    app = web.Application()
    state = app[graceful.STATE] = {"hits": 0, "since": "factory"}

    async def hit(request: web.Request) -> web.Response:
        state["hits"] += 1
        return web.Response(text=f"{state['hits']}\n")

    app.router.add_get("/hit", hit)
    return app


async def _helper_hit(request: web.Request) -> web.Response:
    state = graceful.state(request)
    state["hits"] = state.get("hits", 0) + 1
    return web.Response(text=f"{state['hits']}\n")


def helper_state() -> web.Application:
    """Never touches the key: graceful.state() in handlers, from the root app and from a
    sub-application (whose request.app is the sub-app) alike."""
    app = web.Application()
    app.router.add_get("/hit", _helper_hit)
    admin = web.Application()
    admin.router.add_get("/hit", _helper_hit)

    async def raw(request: web.Request) -> web.Response:
        return web.json_response(request.app[graceful.STATE])  # the sub-app sees it too

    admin.router.add_get("/raw", raw)
    app.add_subapp("/admin", admin)
    return app


def subapp_own_state() -> web.Application:
    """A sub-application with a state dict of its own: two states, one file."""
    app = web.Application()
    app[graceful.STATE] = {}
    admin = web.Application()
    admin[graceful.STATE] = {"admin": True}
    app.add_subapp("/admin", admin)
    return app


def unjsonable() -> web.Application:
    """GET /set?key=K&kind=KIND puts a value JSON cannot hold (or a good one) at state[K]."""
    import datetime

    app = basic()

    def value(kind: str) -> Any:
        return {
            "good": "fine",
            "datetime": {"when": datetime.datetime(2026, 1, 1)},
            "set": [1, {2, 3}],
            "nan": float("nan"),
            "tuple": (1, 2),
        }[kind]

    async def put(request: web.Request) -> web.Response:
        state = graceful.state(request)
        kind = request.query["kind"]
        if kind == "intkey":
            state[42] = 1
        else:
            state[request.query.get("key", "bad")] = value(kind)
        return web.Response(text="ok\n")

    app.router.add_get("/set", put)
    return app


def slow_volume() -> web.Application:
    """basic, on a volume whose fsync takes $FSYNC_DELAY_S: the process's os.fsync is
    slowed (this is the server's own process; no seam in graceful is needed)."""
    import time

    delay = float(os.environ.get("FSYNC_DELAY_S", "0.04"))
    real = os.fsync

    def slow_fsync(fd: int) -> None:
        time.sleep(delay)
        real(fd)

    os.fsync = slow_fsync
    return basic()


def large_state() -> web.Application:
    """A state of $STATE_MB megabytes of records that never changes, and a loop-lag probe:
    GET /lag gives the loop stalls seen (ms) and the time one json.dumps of the state takes."""
    import json
    import time

    app = basic()
    megabytes = float(os.environ.get("STATE_MB", "20"))
    records = int(megabytes * 1e6 / 70)
    stalls: list[float] = []
    dumps_ms: list[float] = []

    async def fill(app: web.Application) -> None:
        state = app[graceful.STATE]
        state["users"] = {f"user{i:07d}": {"name": "x" * 20, "n": i, "tags": ["a", "b"]}
                          for i in range(records)}
        for _ in range(3):
            started = time.perf_counter()
            json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            dumps_ms.append((time.perf_counter() - started) * 1e3)
        app[_PROBE] = asyncio.create_task(probe())

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(0.002)
            stall = (loop.time() - started - 0.002) * 1e3
            if stall > 5:
                stalls.append(stall)

    async def stop_probe(app: web.Application) -> None:
        app[_PROBE].cancel()

    async def lag(request: web.Request) -> web.Response:
        return web.json_response({"stalls_ms": stalls, "dumps_ms": dumps_ms})

    app.on_startup.append(fill)
    app.on_cleanup.append(stop_probe)
    app.router.add_get("/lag", lag)
    return app


_PROBE: web.AppKey[asyncio.Task[None]] = web.AppKey("probe", asyncio.Task)
