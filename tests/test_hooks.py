"""Shutdown hooks: LIFO, each bounded, failures collected, the deadline respected."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from graceful.hooks import HOOKS, add_hook, run_hooks


async def test_lifo_timeout_and_failure_keep_going():
    app = web.Application()
    ran: list[str] = []
    hang = asyncio.Event()

    async def first(app):
        ran.append("first")

    async def hangs(app):
        ran.append("hangs")
        await hang.wait()

    def raises(app):
        ran.append("raises")
        raise ValueError("nope")

    add_hook(app, first)
    add_hook(app, hangs, timeout=0.05)
    add_hook(app, raises, name="the-raiser")
    failures = await run_hooks(app, app[HOOKS], 5.0, lambda: 10.0)
    assert ran == ["raises", "hangs", "first"]
    assert [(f.name, "timed out" in f.error) for f in failures] == [
        ("the-raiser", False), ("test_lifo_timeout_and_failure_keep_going.<locals>.hangs", True)]


async def test_hooks_never_outlive_the_phase_deadline():
    app = web.Application()

    async def slow(app):
        await asyncio.sleep(10)

    add_hook(app, slow, timeout=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    failures = await run_hooks(app, app[HOOKS], 60, lambda: 0.05)
    assert len(failures) == 1 and loop.time() - started < 1


def test_bad_timeout_refused():
    with pytest.raises(ValueError):
        add_hook(web.Application(), lambda app: None, timeout=0)
