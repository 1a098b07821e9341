"""Shutdown hooks: LIFO, each bounded, failures collected, the deadline respected."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from graceful.lifecycle.hooks import HOOKS, add_hook, run_hooks


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


async def test_aiohttp_signal_wiring_is_still_what_the_adapter_reads():
    """graceful/http/aiohttp_signals.py reads how aiohttp wires sub-apps and cleanup_ctx; if
    aiohttp changes it, this fails here rather than hooks silently not running."""
    from contextlib import AbstractAsyncContextManager

    from graceful.http import aiohttp_signals

    async def entry(app):
        yield

    parent, child = web.Application(), web.Application()
    child.cleanup_ctx.append(entry)
    parent.add_subapp("/child", child)
    assert aiohttp_signals.subapps(parent) == [child]
    relays = [aiohttp_signals.subapp_relay(cb) for cb in parent.on_cleanup]
    assert [(app, list(signal)) for app, signal in filter(None, relays)] == [
        (child, list(child.on_cleanup))]
    contexts = [aiohttp_signals.cleanup_context(cb) for cb in child.on_cleanup]
    assert contexts == [child.cleanup_ctx]
    assert aiohttp_signals.entered(child.cleanup_ctx) == []
    ctx = aiohttp_signals.context_of(entry, child)
    assert isinstance(ctx, AbstractAsyncContextManager)


async def test_sync_hook_runs_in_a_daemon_thread_and_is_abandoned_at_its_timeout():
    import threading
    import time

    app = web.Application()
    release = threading.Event()
    threads: list[threading.Thread] = []

    def blocks(app):
        threads.append(threading.current_thread())
        release.wait(10)

    add_hook(app, blocks, timeout=0.1)
    started = time.monotonic()
    failures = await run_hooks(app, app[HOOKS], 5.0, lambda: 10.0)
    assert time.monotonic() - started < 1
    assert [("timed out" in f.error) for f in failures] == [True]
    assert threads[0] is not threading.main_thread() and threads[0].daemon
    release.set()


def _nested_app(trace: list[str]) -> web.Application:
    """A root with a cleanup_ctx, a sub-app with its own, and a sub-sub-app: every signal."""
    def signals(app: web.Application, name: str) -> web.Application:
        async def ctx(app):
            trace.append(f"{name}.ctx.enter")
            yield
            trace.append(f"{name}.ctx.exit")

        for signal in ("on_startup", "on_shutdown", "on_cleanup"):
            async def handler(app, signal=signal):
                trace.append(f"{name}.{signal}")
            getattr(app, signal).append(handler)
        app.cleanup_ctx.append(ctx)
        return app

    root, api, admin = (signals(web.Application(), name) for name in ("root", "api", "admin"))
    api.add_subapp("/admin", admin)
    root.add_subapp("/api", api)
    return root


async def test_signals_run_in_aiohttps_order():
    """Run one handler at a time, graceful calls the same handlers in the same order as
    aiohttp's own runner (web.run_app), sub-apps and cleanup_ctx included."""
    import graceful

    theirs: list[str] = []
    runner = web.AppRunner(_nested_app(theirs), handle_signals=False)
    await runner.setup()
    await runner.cleanup()  # on_shutdown, then on_cleanup, as run_app does

    ours: list[str] = []
    async with graceful.Runtime(_nested_app(ours), graceful.Config(port=0)):
        pass
    assert ours == theirs
    assert len(theirs) == 15 and theirs[6:9] == [
        "root.on_shutdown", "api.on_shutdown", "admin.on_shutdown"]
