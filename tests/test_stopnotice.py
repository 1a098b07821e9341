"""graceful.stopping in process: the flag, the waits, and when it fires outside graceful.

1. Before the stop: false; wait(t) times out; every() yields; race() returns the result.
2. Fired: true; await returns at once; every() ends; race() cancels its work, gives default.
3. pytest-aiohttp: asked for in the factory, it fires with on_shutdown (the client's close).
4. pytest-aiohttp: asked for only from a handler, it never fires (documented).
5. time_left: the route's own deadline when shorter than the drain's.
6. A pause: told to requests (kind "pause"), not to the app's background work; cleared at
   the continue; a stop during a pause takes over, told to both. The kinds are a closed set.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

import graceful
from graceful.http import stopnotice


async def test_before_the_stop():
    """1."""
    stop = stopnotice.Stopping(stopnotice.Notice())
    assert not stop and not stop.is_set() and stop.kind == "" and stop.time_left() is None
    assert await stop.wait(0.01) is False
    ticks = []
    async for tick in stop.every(0.001):
        ticks.append(tick)
        if tick == 2:
            break
    assert ticks == [0, 1, 2]
    assert await stop.race(asyncio.sleep(0, "done")) == "done"


async def test_fired():
    """2."""
    notice = stopnotice.Notice()
    stop = stopnotice.Stopping(notice)
    work = asyncio.ensure_future(stop.race(asyncio.sleep(3600), default="stopped"))
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.sleep(0)
    notice.fire("stop")
    assert await asyncio.wait_for(work, 1) == "stopped"
    assert await asyncio.wait_for(waiter, 1) is True
    assert stop and stop.kind == "stop" and await stop is True
    assert [tick async for tick in stop.every(0.001)] == []


async def test_fires_with_on_shutdown_when_asked_in_the_factory(aiohttp_client):
    """3."""
    seen: list[bool] = []
    entered = asyncio.Event()

    async def events(request: web.Request) -> web.Response:
        stop = graceful.stopping(request)
        entered.set()
        seen.append(await stop.wait(5))
        return web.Response(text="ended")

    app = web.Application()
    app.router.add_get("/events", events)
    graceful.stopping(app)
    client = await aiohttp_client(app)
    request = asyncio.ensure_future(client.get("/events"))
    await asyncio.wait_for(entered.wait(), 5)
    await client.server.close()  # on_shutdown, then the wait for handlers (60 s)
    assert await (await asyncio.wait_for(request, 5)).text() == "ended"
    assert seen == [True]


async def test_never_fires_when_asked_only_from_a_handler(aiohttp_client):
    """4."""
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=str(bool(graceful.stopping(request))))

    app = web.Application()
    app.router.add_get("/", handler)
    client = await aiohttp_client(app)
    assert await (await client.get("/")).text() == "False"
    assert app.on_shutdown.frozen and len(app.on_shutdown) == 0


async def test_time_left_is_the_routes_own_deadline():
    """5."""
    now = time.monotonic()
    notice = stopnotice.Notice()
    notice.fire("stop", began=now, drain_until=now + 30)
    assert 29 < stopnotice.Stopping(notice).time_left() <= 30
    assert 1 < stopnotice.Stopping(notice, deadline=2.0).time_left() <= 2


async def test_pause_is_told_to_requests_only_and_cleared_at_continue():
    """6."""
    notice = stopnotice.Notice()
    request, app = stopnotice.Stopping(notice), stopnotice.Stopping(notice, pauses=False)
    now = time.monotonic()
    notice.fire("pause", began=now, drain_until=now + 30)
    assert request and request.kind == "pause" and request.time_left() > 29
    assert not app and app.kind == "" and app.time_left() is None
    notice.pause_over()
    assert not request and request.kind == "" and request.time_left() is None
    notice.fire("pause", began=now, drain_until=now + 30)
    waiting = asyncio.ensure_future(app.wait())
    notice.fire("stop", began=now + 1, drain_until=now + 10)
    assert await asyncio.wait_for(waiting, 1) is True
    assert request.kind == app.kind == "stop" and request.time_left() < 10
    notice.pause_over()  # a continue cannot undo a stop
    notice.fire("pause")
    assert request.kind == "stop"
    with pytest.raises(ValueError, match="one of stop, pause, restart"):
        notice.fire("reload")  # type: ignore[arg-type]
