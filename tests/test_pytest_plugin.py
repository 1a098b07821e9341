"""graceful's pytest plugin, as a user meets it: installed, no flag, no PYTHONPATH.

1. A user's project (its app module in its own folder) tests its drain with the
   `graceful_server` fixture, beside pytest-aiohttp's `aiohttp_client` in one session.
2. The assertions fail with messages that say what went wrong: the request cut at the
   deadline, the exit code, the phase missing from the timeline.
3. A held request is known to be in its handler when hold() returns: a stop sent at once
   finds it in flight (no sleep), in a subprocess and in-process.
4. Responses after the stop that keep the connection open, and phases out of order, are
   named.
5. In-process, a factory object is served, stopped through the API, its checkpoint read.
"""

from __future__ import annotations

import re

import pytest

from graceful.testing import GracefulServer, Response

pytest_plugins = ("pytester",)

MYAPP = '''
import asyncio
from aiohttp import web

TOKEN = "let-me-in"

@web.middleware
async def auth(request, handler):
    if request.headers.get("Authorization") != f"Bearer {TOKEN}":
        raise web.HTTPUnauthorized()
    return await handler(request)

async def slow(request):
    await asyncio.sleep(float(request.query.get("s", "0.5")))
    request.app["served"] += 1
    return web.Response(text="done")

def create_app():
    app = web.Application(middlewares=[auth])
    app["served"] = 0
    app.router.add_get("/slow", slow)
    return app
'''

USER_TESTS = '''
from myapp import TOKEN, create_app

AUTH = {"Authorization": f"Bearer {TOKEN}"}

async def test_with_pytest_aiohttp(aiohttp_client):
    client = await aiohttp_client(create_app())
    assert (await client.get("/slow?s=0", headers=AUTH)).status == 200

async def test_drains(graceful_server):
    server = graceful_server("myapp:create_app", "--drain-timeout", "5")
    await server.hold("/slow?s=0.5", headers=AUTH)
    server.stop()
    await server.assert_held_answered()
    server.assert_closes_after_stop()
    server.assert_exit(0)
    server.assert_timeline(budget_s=3)

async def test_cut_at_the_deadline(graceful_server):
    server = graceful_server("myapp:create_app", "--drain-timeout", "0.2",
                             "--cancel-grace", "0.1")
    await server.hold("/slow?s=30", headers=AUTH)
    server.stop()
    await server.assert_held_answered()

async def test_wrong_exit(graceful_server):
    server = graceful_server("myapp:create_app", "--drain-timeout", "0.2",
                             "--cancel-grace", "0.1")
    await server.hold("/slow?s=30", headers=AUTH)
    server.stop()
    server.assert_exit(0)

async def test_missing_phase(graceful_server):
    server = graceful_server("myapp:create_app", in_process=True)
    server.stop()
    await server.exited()
    server.assert_timeline(phases=("stop.requested", "checkpoint.flushed"))
'''


def test_a_users_project_tests_its_drain(pytester, monkeypatch):
    """1, 2. The fixture from the entry point, beside pytest-aiohttp; readable failures."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    pytester.makepyfile(myapp=MYAPP, test_myapp=USER_TESTS)
    pytester.makeini("[pytest]\nasyncio_mode = auto\n"
                     "asyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=3)
    result.stdout.fnmatch_lines([
        "*1 of 1 requests held in flight were not answered in full:",
        "*GET /slow?s=30: cut short: the connection ended inside a response*",
    ])
    result.stdout.fnmatch_lines(["*exit code 3, wanted 0:*"])
    result.stdout.fnmatch_lines(["*no checkpoint.flushed event in the log:*"])


@pytest.mark.parametrize("in_process", [False, True])
async def test_hold_returns_with_the_handler_running(graceful_server, in_process):
    """3. The stop sent as hold() returns finds the request in flight: it is waited for
    (drain.done after the response), not refused or reset."""
    if in_process:
        server = graceful_server("tests.apps:basic", in_process=True, drain_timeout=5)
    else:
        server = graceful_server("tests.apps:basic", "--drain-timeout", "5")
    held = await server.hold("/slow?s=0.3")
    server.stop()
    await server.assert_held_answered()
    assert (await held.response()).body == b"slept 0.3\n"
    assert await server.exited() == 0
    assert server.names().index("drain.done") > server.names().index("stop.requested")


def test_messages_name_what_kept_the_connection_and_what_came_out_of_order():
    """4. The two assertions that need a misbehaving server, on a fed log."""
    server = GracefulServer()
    server.stops.append(0.0)
    server.responses.append(Response(200, {"connection": "keep-alive"}, b"", received_at=0.1))
    with pytest.raises(AssertionError, match=re.escape(
            "1 of 1 responses after the stop kept the connection open:\n"
            "  status 200 at +0.100s, Connection: keep-alive")):
        server.assert_closes_after_stop()
    for name in ("stop.requested", "hooks.done", "listeners.closed", "drain.done"):
        server.log.feed(f'{{"event": "{name}", "timestamp": "2026-01-01T00:00:00Z"}}\n')
    with pytest.raises(AssertionError, match=re.escape(
            "out of order: stop.requested < hooks.done < listeners.closed < drain.done")):
        server.assert_timeline()


async def test_in_process_serves_a_factory_object_with_its_checkpoint(graceful_server,
                                                                     tmp_path):
    """5. In-process, the target may be the factory itself; the checkpoint is read back."""
    from tests import apps

    path = tmp_path / "state.ckpt"
    server = graceful_server(apps.basic, in_process=True, checkpoint=path)
    for _ in range(2):
        assert (await server.get("/count")).status == 200
    server.stop("API", "test")
    assert await server.exited() == 0
    server.assert_checkpoint("count", 2)
    with pytest.raises(AssertionError, match=r"the checkpoint's 'count' is 2, wanted 3"):
        server.assert_checkpoint("count", 3)
