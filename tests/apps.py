"""Applications the end-to-end tests serve with the real CLI."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

import graceful
from graceful.logs import get_logger


async def slow(request: web.Request) -> web.Response:
    seconds = float(request.query.get("s", "1"))
    await asyncio.sleep(seconds)
    state = request.app[graceful.STATE]
    state["served"] = state.get("served", 0) + 1
    return web.Response(text=f"slept {seconds}\n")


_handlers_started = itertools.count(1)


async def traced(request: web.Request) -> web.Response:
    """`slow`, logging `app.handler_started` (`n`: how many have started so far) as it
    begins: a test signals once its requests are in their handlers, not after a sleep."""
    structlog.get_logger().info("app.handler_started", n=next(_handlers_started))
    return await slow(request)


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


async def stream_until_stopping(request: web.Request) -> web.StreamResponse:
    """Ticks until the stop (or a restart) begins, then ends whole: server-sent events as
    users write them, with nothing about the connection."""
    response = web.StreamResponse()
    await response.prepare(request)
    async for _ in graceful.stopping(request).every(0.05):
        await response.write(b"tick\n")
    await response.write(b"bye\n")
    await response.write_eof()
    return response


def _routes(app: web.Application) -> web.Application:
    app.router.add_get("/slow", slow)
    app.router.add_get("/fast", fast)
    app.router.add_get("/traced", traced)
    app.router.add_post("/upload", upload)
    app.router.add_get("/stubborn", stubborn)
    app.router.add_get("/count", counter)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/stream", stream)
    app.router.add_get("/stream-until-stopping", stream_until_stopping)
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


async def big_response(request: web.Request) -> web.Response:
    """50 MB in one Response: aiohttp writes it after the handler has returned."""
    return web.Response(body=b"x" * 50_000_000)


def with_big_response() -> web.Application:
    return _basic_with_route("/big-response", big_response)


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


# -- apps shaped the way users write them -----------------------------------------------------


async def read_body(request: web.Request) -> web.Response:
    body = await request.read()
    return web.Response(text=f"{len(body)}\n")


def with_handler_args() -> web.Application:
    """Settings given the aiohttp way: bigger header fields, a short keep-alive, 4 MiB bodies."""
    app = web.Application(handler_args={"max_field_size": 32768, "keepalive_timeout": 2},
                          client_max_size=4 * 1024 * 1024)
    app.router.add_get("/fast", fast)
    app.router.add_post("/body", read_body)
    return app


def with_subapps() -> web.Application:
    """Hooks registered on a sub-app (and a sub-sub-app), one of them failing."""
    app = basic()
    api = web.Application()
    admin = web.Application()

    async def close_api_client(app: web.Application) -> None:
        _trace("api.close_client")

    def flush_api_metrics(app: web.Application) -> None:
        _trace("api.flush_metrics")
        raise RuntimeError("metrics sink gone")

    async def close_admin_sessions(app: web.Application) -> None:
        _trace("admin.close_sessions")

    async def close_root_pool(app: web.Application) -> None:
        _trace("root.close_pool")

    async def api_hello(request: web.Request) -> web.Response:
        return web.Response(text="api\n")

    api.router.add_get("/hello", api_hello)
    graceful.add_hook(api, close_api_client)
    graceful.add_hook(api, flush_api_metrics)
    graceful.add_hook(admin, close_admin_sessions)
    graceful.add_hook(app, close_root_pool)
    api.add_subapp("/admin", admin)
    app.add_subapp("/api", api)
    return app


def failing_subapp_startup() -> web.Application:
    app = basic()
    api = web.Application()

    async def connect_search_index(app: web.Application) -> None:
        raise RuntimeError("search index unreachable")

    api.on_startup.append(connect_search_index)
    app.add_subapp("/api", api)
    return app


SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets", set)


def websocket_goodbye() -> web.Application:
    """aiohttp's documented recipe: on_shutdown tells every websocket client to reconnect
    elsewhere, then closes it."""
    app = web.Application()
    app[SOCKETS] = set()

    async def chat(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        request.app[SOCKETS].add(ws)
        try:
            async for message in ws:
                await ws.send_str(message.data)
        finally:
            request.app[SOCKETS].discard(ws)
        return ws

    async def say_goodbye(app: web.Application) -> None:
        for ws in set(app[SOCKETS]):
            await ws.send_str("reconnect")
            await ws.close(code=1001, message=b"server restarting")

    app.router.add_get("/ws", chat)
    app.on_shutdown.append(say_goodbye)
    return app


def _slow_closing(name: str, seconds: float) -> Callable[[web.Application], Any]:
    async def ctx(app: web.Application) -> Any:
        yield
        await asyncio.sleep(seconds)
        _trace(f"closed {name}")

    ctx.__name__ = ctx.__qualname__ = f"close_{name}"
    return ctx


def three_slow_cleanup_ctx() -> web.Application:
    """Three cleanup_ctx that take 0.5 s each to close."""
    app = basic()
    app.cleanup_ctx.extend([_slow_closing("db", 0.5), _slow_closing("cache", 0.5),
                            _slow_closing("queue", 0.5)])
    return app


def hanging_cleanup() -> web.Application:
    """A cleanup_ctx that hangs on close and an on_cleanup that raises, among good ones."""
    app = basic()

    async def stuck_broker(app: web.Application) -> Any:
        yield
        await asyncio.sleep(3600)

    async def drop_temp_files(app: web.Application) -> None:
        raise RuntimeError("temp folder gone")

    app.cleanup_ctx.extend([_slow_closing("db", 0.1), stuck_broker])
    app.on_cleanup.append(drop_temp_files)
    return app


def blocking_hook() -> web.Application:
    """A sync hook that blocks (a client library without async support)."""
    app = basic()

    def flush_to_legacy_store(app: web.Application) -> None:
        time.sleep(3)

    graceful.add_hook(app, flush_to_legacy_store, timeout=0.5)
    return app


@web.middleware
async def _require_token(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.headers.get("Authorization") != "Bearer let-me-in":
        raise web.HTTPUnauthorized(text="who are you?\n")
    return await handler(request)


def single_page_app() -> web.Application:
    """An auth middleware and the usual single-page-app fallback route catching every path."""
    app = web.Application(middlewares=[_require_token])

    async def index(request: web.Request) -> web.Response:
        return web.Response(text="<html>app</html>\n")

    app.router.add_get("/{tail:.*}", index)
    return app

# Secrets the way real apps hold them: in locals, in the state, in a DSN. The logs must
# carry none of them, whatever fails (tests/test_log_safety_e2e.py looks for "s3cret").
DSN = "postgresql://app:dsn-s3cret@db.internal/app"


async def calls_upstream(request: web.Request) -> web.Response:
    token = request.headers.get("Authorization", "")
    api_key = request.query.get("api_key", "")
    request.app[graceful.STATE]["last_token"] = token
    raise RuntimeError(f"upstream refused the call ({len(token) + len(api_key)} bytes)")


def leaky() -> web.Application:
    """A handler and a shutdown hook that fail with secrets in their locals and state."""
    app = basic()
    app.router.add_get("/upstream", calls_upstream)

    async def close_pool(app: web.Application) -> None:
        dsn = DSN
        raise ConnectionError(f"pool close failed after {len(dsn)} tries")

    graceful.add_hook(app, close_pool)
    return app


def leaky_startup() -> web.Application:
    """on_startup fails with the DSN in its locals."""
    async def connect(app: web.Application) -> None:
        dsn = DSN
        raise ConnectionError(f"database unreachable ({len(dsn)})")

    return _basic_starting_with(connect)


def traced_startup() -> web.Application:
    """Writes "factory" and "on_startup" to $TRACE_FILE when they run."""
    _trace("factory")

    async def started(app: web.Application) -> None:
        _trace("on_startup")

    return _basic_starting_with(started)

# -- on_cleanup hands its last write to a thread, as logging handlers, metrics exporters and
# message-queue producers do; the file lands in $OUT_DIR half a second later.

def _slow_write(name: str) -> None:
    time.sleep(0.5)
    (Path(os.environ["OUT_DIR"]) / name).write_text("written\n")


def _cleaning_up_with(on_cleanup: Callable[[web.Application], Awaitable[None]]
                      ) -> web.Application:
    app = basic()
    app.on_cleanup.append(on_cleanup)
    return app


def cleanup_thread() -> web.Application:
    async def flush_in_background(app: web.Application) -> None:
        threading.Thread(target=_slow_write, args=("thread.txt",)).start()

    return _cleaning_up_with(flush_in_background)


def cleanup_pool() -> web.Application:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    async def flush_in_pool(app: web.Application) -> None:
        pool.submit(_slow_write, "pool.txt")

    return _cleaning_up_with(flush_in_pool)


def cleanup_default_executor() -> web.Application:
    async def flush_in_executor(app: web.Application) -> None:
        asyncio.get_running_loop().run_in_executor(None, _slow_write, "executor.txt")

    return _cleaning_up_with(flush_in_executor)


def endless_thread() -> web.Application:
    """A metrics exporter started with the app, that nobody tells to stop: it never ends."""
    async def start_exporter(app: web.Application) -> None:
        threading.Thread(target=threading.Event().wait, name="metrics-exporter").start()

    return _basic_starting_with(start_exporter)


def endless_executor_job() -> web.Application:
    """on_cleanup hands the loop's default executor a job that never ends."""
    async def wait_forever_in_executor(app: web.Application) -> None:
        asyncio.get_running_loop().run_in_executor(None, threading.Event().wait)

    return _cleaning_up_with(wait_forever_in_executor)

# -- the checkpoint as users write it (tests/test_checkpoint_*_e2e.py) -------------------


def own_state() -> web.Application:
    """The factory creates the state itself and keeps a reference to it."""
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
    """A state of $STATE_MB megabytes of records that never changes (with $STATE_CHANGES:
    one of them changes every few milliseconds), and a loop-lag probe: GET /lag gives the
    loop stalls seen (ms) and the time one json.dumps of the state takes."""
    import json
    import time

    app = basic()
    megabytes = float(os.environ.get("STATE_MB", "20"))
    records = int(megabytes * 1e6 / 70)
    stalls: list[float] = []
    dumps_ms: list[float] = []

    changing = bool(os.environ.get("STATE_CHANGES"))

    async def fill(app: web.Application) -> None:
        state = app[graceful.STATE]
        state["users"] = {f"user{i:07d}": {"name": "x" * 20, "n": i, "tags": ["a", "b"]}
                          for i in range(records)}
        for _ in range(3):
            started = time.perf_counter()
            json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            dumps_ms.append((time.perf_counter() - started) * 1e3)
        app[_PROBE] = asyncio.create_task(probe(state))

    async def probe(state: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(0.002)
            stall = (loop.time() - started - 0.002) * 1e3
            if stall > 5:
                stalls.append(stall)
            if changing:  # $STATE_CHANGES: a record changes all the time, as a busy app's do
                state["users"]["user0000000"]["n"] += 1

    async def stop_probe(app: web.Application) -> None:
        app[_PROBE].cancel()

    async def lag(request: web.Request) -> web.Response:
        return web.json_response({"stalls_ms": stalls, "dumps_ms": dumps_ms})

    app.on_startup.append(fill)
    app.on_cleanup.append(stop_probe)
    app.router.add_get("/lag", lag)
    return app


_PROBE: web.AppKey[asyncio.Task[None]] = web.AppKey("probe", asyncio.Task)


async def _tcp_reachable(port: int) -> None:
    """A dependency's health check as users write it: can we open a connection?"""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()


async def _page(request: web.Request) -> web.Response:
    missing = graceful.degraded(request)
    return web.Response(text=f"placeholder ({', '.join(sorted(missing))})\n" if missing
                        else "live\n")


# --8<-- [start:checks]
def with_dependencies() -> web.Application:
    """A database that must be there (DB_PORT) and a cache that may be missing
    (CACHE_PORT), each a TCP server on 127.0.0.1 the test starts and stops."""
    app = web.Application()
    app.router.add_get("/page", _page)
    if "DB_PORT" in os.environ:
        db_port = int(os.environ["DB_PORT"])

        async def database(app: web.Application) -> None:
            await _tcp_reachable(db_port)

        graceful.add_check(app, "database", database, required=True, timeout=1.0,
                           backoff=0.05)
    if "CACHE_PORT" in os.environ:
        cache_port = int(os.environ["CACHE_PORT"])

        async def cache(app: web.Application) -> None:
            await _tcp_reachable(cache_port)

        graceful.add_check(app, "cache", cache, required=False, timeout=1.0, backoff=0.05)
    if "HANGING_CHECK" in os.environ:
        async def hangs(app: web.Application) -> None:
            await asyncio.sleep(3600)

        graceful.add_check(app, "hangs", hangs, required=os.environ["HANGING_CHECK"] == "required",
                           timeout=float(os.environ.get("HANGING_TIMEOUT", "2")), backoff=0.05)
    return app
# --8<-- [end:checks]


def with_traced_hooks() -> web.Application:
    """basic, with a graceful hook and an on_shutdown that write to $TRACE_FILE: a pause
    must run neither, a stop both."""
    app = basic()

    async def hook(app: web.Application) -> None:
        _trace("hook")

    async def on_shutdown(app: web.Application) -> None:
        _trace("on_shutdown")

    graceful.add_hook(app, hook)
    app.on_shutdown.append(on_shutdown)
    return app


async def _env(request: web.Request) -> web.Response:
    return web.Response(text=os.environ.get(request.query["name"], "(unset)"))


def with_env() -> web.Application:
    """basic, and GET /env?name=X answering the process' environment variable X: what a
    service was given with `graceful service install --env`."""
    app = basic()
    app.router.add_get("/env", _env)
    return app

async def heap_figures(request: web.Request) -> web.Response:
    import gc

    return web.json_response({"frozen": gc.get_freeze_count(), "walked": len(gc.get_objects())})


def large_heap() -> web.Application:
    """Builds 200,000 container objects at startup (caches, a restored state) and answers
    /heap with how many objects are frozen and how many a full collection walks."""
    app = _basic_with_route("/heap", heap_figures)

    async def fill(app: web.Application) -> None:
        app[LARGE_HEAP] = [[n] for n in range(200_000)]

    app.on_startup.append(fill)
    return app


LARGE_HEAP = web.AppKey("large_heap", list)


# -- per-route drain deadlines --------------------------------------------------------------


async def _endless_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events that never end by themselves (no graceful.stopping)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    tick = 0
    while True:
        await response.write(f"data: {tick}\n\n".encode())
        tick += 1
        await asyncio.sleep(0.1)


# --8<-- [start:route-deadlines]
def with_route_deadlines() -> web.Application:
    """Stream routes cut after 0.5 s, marked every way a user would: on add_get's route,
    above and below a route table's decorator, on a class-based view, in a sub-app."""
    routes = web.RouteTableDef()

    async def events(request: web.Request) -> web.StreamResponse:
        return await _endless_events(request)

    @graceful.drain_deadline(0.5)
    @routes.get("/table-events")
    async def table_events(request: web.Request) -> web.StreamResponse:
        return await _endless_events(request)

    @routes.get("/table-events-below")
    @graceful.drain_deadline(0.5)
    async def table_events_below(request: web.Request) -> web.StreamResponse:
        return await _endless_events(request)

    @routes.view("/report")
    @graceful.drain_deadline(0.5)
    class Report(web.View):
        async def get(self) -> web.Response:
            await asyncio.sleep(3600)  # no response started: a request, not a stream
            return web.Response(text="never")

    async def sub_events(request: web.Request) -> web.StreamResponse:
        return await _endless_events(request)

    app = web.Application()
    app.add_routes(routes)
    graceful.drain_deadline(0.5, app.router.add_get("/events", events))
    app.router.add_get("/slow", slow)  # keeps the whole drain budget
    app.router.add_get("/endless", _endless_events)  # so does this stream
    sub = web.Application()
    graceful.drain_deadline(0.5, sub.router.add_get("/events", sub_events))
    app.add_subapp("/sub", sub)
    return app
# --8<-- [end:route-deadlines]


async def _slow_ws(request: web.Request) -> web.WebSocketResponse:
    """A websocket whose handler takes a while over each message (a slow lookup)."""
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        structlog.get_logger().info("app.ws_lookup", seconds=float(message.data))
        await asyncio.sleep(float(message.data))
        if not ws.closed:
            await ws.send_str("done")
    return ws


def with_slow_ws() -> web.Application:
    return _basic_with_route("/slow-ws", _slow_ws)


async def _loaded_modules(request: web.Request) -> web.Response:
    watched = ("prometheus_client", "graceful.metrics.endpoint")
    return web.json_response(sorted(m for m in sys.modules if m.startswith(watched)))


def instrumented() -> web.Application:
    """An app with metrics of its own, as users of prometheus_client write it: a Counter in
    the default registry, counted by GET /hit."""
    from prometheus_client import Counter

    hits = Counter("app_hits", "Hits of /hit.")

    async def hit(request: web.Request) -> web.Response:
        hits.inc()
        return web.Response(text="hit\n")

    return _basic_with_route("/hit", hit)


def observed() -> web.Application:
    """For the metrics tests: the basic routes; /modules says which metrics modules are
    loaded; at the stop an on_shutdown handler that fails, then a hook that takes 1.5 s
    (logged as it starts), so a scrape in the hooks phase sees the whole stop counted."""
    app = _basic_with_route("/modules", _loaded_modules)

    async def report_to_dashboard(app: web.Application) -> None:
        get_logger("app").info("app.slow_hook")
        await asyncio.sleep(1.5)

    async def notify_peers(app: web.Application) -> None:
        raise ConnectionRefusedError("peer gone")

    graceful.add_hook(app, report_to_dashboard)
    app.on_shutdown.append(notify_peers)
    return app


# -- what a stream learns of a pause, and uploads answered before their body is read -----------


async def _telling_stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events until the stop (or pause) begins; the last event says its kind."""
    stop = graceful.stopping(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    async for tick in stop.every(0.1):
        await response.write(f"data: tick {tick}\n\n".encode())
    await response.write(f"event: bye\ndata: {stop.kind}\n\n".encode())
    await response.write_eof()
    return response


def with_telling_stream() -> web.Application:
    return _basic_with_route("/events", _telling_stream)


@web.middleware
async def _token_required(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuses a request without the token before its handler reads the body."""
    if request.headers.get("Authorization") != "Bearer ok":
        raise web.HTTPUnauthorized(text="no token\n")
    return await handler(request)


def with_guarded_uploads() -> web.Application:
    """POST /body reads its body (413 past 64 KiB, client_max_size); a sub-app's POST
    /api/body refuses a request without a token, its body unread."""
    app = web.Application(client_max_size=64 * 1024)
    app.router.add_get("/fast", fast)
    app.router.add_post("/body", read_body)
    api = web.Application(middlewares=[_token_required])
    api.router.add_post("/body", read_body)
    app.add_subapp("/api", api)
    return app


def logs_what_it_is_sent() -> web.Application:
    """Handlers that log what the client sent, as apps do: the search words and the user
    agent, through structlog and through the standard library's logging; an error whose
    message quotes the query (aiohttp logs it with its traceback); and /wait/NAME, which
    waits `s` seconds, whatever NAME holds."""
    app = web.Application()

    async def search(request: web.Request) -> web.Response:
        words = request.query.get("q", "")
        structlog.get_logger().info("app.search", q=words,
                                    agent=request.headers.get("User-Agent", ""))
        logging.getLogger("app").warning("searched for %s", words)
        return web.Response(text="found nothing\n")

    async def item(request: web.Request) -> web.Response:
        raise LookupError(f"no item called {request.query.get('name', '')}")

    async def wait(request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", "1")))
        return web.Response(text="waited\n")

    app.router.add_get("/search", search)
    app.router.add_get("/item", item)
    app.router.add_get("/wait/{name}", wait)
    return app


async def _pid(request: web.Request) -> web.Response:
    """Which process answered; after `?s=SECONDS` of sleep. The body is read whole first,
    its length answered in X-Body-Length."""
    await asyncio.sleep(float(request.query.get("s", "0")))
    body = await request.read()
    return web.Response(text=f"{os.getpid()}\n", headers={"X-Body-Length": str(len(body))})


def answers_pid() -> web.Application:
    """`/pid` (any method): the pid of the worker that answered (a restart's keep-alive
    tests)."""
    app = basic()
    app.router.add_route("*", "/pid", _pid)
    return app
