"""Apps shaped the way users write them, served by the real CLI.

1. `handler_args` and `client_max_size` reach the server as under run_app: a 16 KB cookie
   is served, a 2 MiB body read, an idle keep-alive connection closed after the app's
   `keepalive_timeout`.
2. Without handler_args the keep-alive timeout is run_app's 75 s, not RequestHandler's 3630 s.
3. Hooks registered on sub-apps run, a sub-app's before its parent's; a failing one is
   named in hooks.done; exit 5.
4. A failing sub-app on_startup is named by its own function.
5. An on_shutdown that says goodbye to its websockets (aiohttp's recipe) is not raced by
   graceful's 1001: all three clients get the goodbye; exit 0.
6. Three cleanup_ctx that take 0.5 s each with --hook-timeout 1 all close; exit 0.
7. A hanging cleanup_ctx and a failing on_cleanup are named by their functions, the others
   still run; exit 5.
8. A sync hook that blocks is bounded by its timeout: exit 5, long before it would return.
9. Health answers before the app's middlewares and its catch-all route; --no-health leaves
   every path to the app; an exact route of the app on the path is still refused.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

import graceful
from tests.rawhttp import Connection, get


async def test_handler_args_and_client_max_size_reach_the_server(serve):
    """1."""
    server = serve("tests.apps:with_handler_args")
    conn = await Connection.open(server.port)
    try:
        conn.send("GET", "/fast", headers={"Cookie": "session=" + "x" * 16384})
        assert (await conn.read_response()).status == 200
        conn.send("POST", "/body", body=b"y" * (2 * 1024 * 1024))
        response = await conn.read_response()
        assert (response.status, response.body) == (200, b"2097152\n")
        idle_from = time.monotonic()
        assert await conn.at_eof(timeout=6)  # keepalive_timeout=2 from handler_args
        assert 1.5 < time.monotonic() - idle_from < 5
    finally:
        conn.close()
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0


async def test_default_keepalive_timeout_is_run_apps():
    """2."""
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", hello)
    async with graceful.Runtime(app, graceful.Config(port=0)) as runtime:
        conn = await Connection.open(runtime.port)
        assert (await conn.request("GET", "/")).status == 200
        protocols = list(runtime._started.tracker.connections)  # type: ignore[union-attr]
        assert [p._keepalive_timeout for p in protocols] == [75.0]
        conn.close()


async def test_subapp_hooks_run_and_fail_visibly(serve, tmp_path):
    """3."""
    trace = tmp_path / "trace"
    server = serve("tests.apps:with_subapps", env={"TRACE_FILE": str(trace)})
    assert (await get(server.port, "/api/hello")).body == b"api\n"
    server.signal()
    assert await asyncio.to_thread(server.wait) == 5
    assert trace.read_text().split() == [
        "admin.close_sessions", "api.flush_metrics", "api.close_client", "root.close_pool"]
    failed = server.wait_for("hooks.done")["failed"]
    assert [name.rsplit(".", 1)[-1] for name in failed] == ["flush_api_metrics"]


async def test_failing_subapp_startup_is_named(serve):
    """4."""
    server = serve("tests.apps:failing_subapp_startup", wait_started=False)
    assert await asyncio.to_thread(server.wait) == 1
    error = server.wait_for("startup.failed")["error"]
    assert "connect_search_index" in error and "search index unreachable" in error
    assert "reg_handler" not in error


async def test_app_goodbye_to_websockets_is_not_raced(serve):
    """5."""
    server = serve("tests.apps:websocket_goodbye")
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(f"http://127.0.0.1:{server.port}/ws")
                   for _ in range(3)]
        for ws in sockets:  # each one is open and served
            await ws.send_str("hi")
            assert (await ws.receive_str(timeout=5)) == "hi"
        server.signal()
        received = []
        for ws in sockets:
            message = await ws.receive(timeout=10)
            received.append(message.data if message.type is aiohttp.WSMsgType.TEXT else None)
            await ws.close()
    assert received == ["reconnect"] * 3
    assert await asyncio.to_thread(server.wait) == 0
    assert server.wait_for("hooks.done")["failed"] == []


async def test_each_cleanup_ctx_gets_its_own_timeout(serve, tmp_path):
    """6."""
    trace = tmp_path / "trace"
    server = serve("tests.apps:three_slow_cleanup_ctx", "--hook-timeout", "1",
                   env={"TRACE_FILE": str(trace)})
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    assert trace.read_text().split("\n")[:-1] == ["closed queue", "closed cache", "closed db"]
    assert server.wait_for("hooks.done")["failed"] == []


async def test_failing_cleanups_are_named_by_their_function(serve, tmp_path):
    """7."""
    trace = tmp_path / "trace"
    server = serve("tests.apps:hanging_cleanup", "--hook-timeout", "0.5",
                   env={"TRACE_FILE": str(trace)})
    server.signal()
    assert await asyncio.to_thread(server.wait) == 5
    assert server.wait_for("hook.timeout")["hook"].endswith("stuck_broker")
    assert server.wait_for("hook.failed")["hook"].endswith("drop_temp_files")
    assert trace.read_text().split("\n")[:-1] == ["closed db"]
    failed = [name.rsplit(".", 1)[-1] for name in server.wait_for("hooks.done")["failed"]]
    assert sorted(failed) == ["drop_temp_files", "stuck_broker"]


async def test_blocking_sync_hook_is_bounded(serve):
    """8."""
    server = serve("tests.apps:blocking_hook")
    started = time.monotonic()
    server.signal()
    assert await asyncio.to_thread(server.wait) == 5
    assert time.monotonic() - started < 2.5  # the hook sleeps 3 s; its timeout is 0.5 s
    timeout = server.wait_for("hook.timeout")
    assert timeout["hook"].endswith("flush_to_legacy_store") and timeout["timeout_s"] == 0.5


async def test_health_answers_before_the_apps_middlewares_and_routes(serve):
    """9."""
    server = serve("tests.apps:single_page_app")
    assert (await get(server.port, "/livez")).status == 200
    assert (await get(server.port, "/readyz")).body == b"ready\n"
    assert (await get(server.port, "/some/page")).status == 401  # the app's own auth
    conn = await Connection.open(server.port)
    try:
        conn.send("GET", "/some/page", headers={"Authorization": "Bearer let-me-in"})
        assert (await conn.read_response()).body == b"<html>app</html>\n"
    finally:
        conn.close()
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0

    off = serve("tests.apps:single_page_app", "--no-health")
    assert (await get(off.port, "/livez")).status == 401  # the app's, as with run_app
    off.signal()
    assert await asyncio.to_thread(off.wait) == 0

    taken = serve("tests.apps:shadows_readyz", wait_started=False)
    assert await asyncio.to_thread(taken.wait) == 2
    assert "already routes /readyz" in taken.wait_for("process.failed")["error"]
