"""How aiohttp wires an Application's signals, read from its objects (hooks.py runs each
handler on its own, bounded and named). The private names it needs (CleanupContext's
entered list, the relay closure a parent holds for each sub-app's signals) are reached
through aiohttp_internals.py; tests/test_hooks.py fails if they move.

- a parent's on_startup/on_shutdown/on_cleanup holds one relay closure `handler` per
  sub-app signal, holding `subsig` (the sub-app's signal) and `subapp`;
- the cleanup_ctx list (`CleanupContext`) is registered as its bound methods, and keeps
  the entered context managers;
- a cleanup_ctx entry returns an async context manager or is an async generator function;
- a sub-app's resource answers `get_info()` with its `app`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from aiohttp import web

from graceful.http import aiohttp_internals as internals
from graceful.http.aiohttp_internals import cleanup_context, entered

__all__ = ["cleanup_context", "context_of", "entered", "subapp_relay", "subapps"]


def subapps(app: web.Application) -> list[web.Application]:
    """The sub-applications added to `app` (add_subapp, add_domain), in order."""
    found = []
    for resource in app.router.resources():
        subapp = resource.get_info().get("app")
        if isinstance(subapp, web.Application) and subapp not in found:
            found.append(subapp)
    return found


def subapp_relay(callback: Any) -> tuple[web.Application, Any] | None:
    """(sub-app, its signal) when `callback` is aiohttp's relay of a sub-app's signal."""
    if getattr(callback, "__qualname__", None) != internals.SUBAPP_RELAY_QUALNAME:
        return None
    cells = dict(zip(callback.__code__.co_freevars,
                     (cell.cell_contents for cell in callback.__closure__ or ()), strict=True))
    return cells["subapp"], cells["subsig"]


def context_of(factory: Any, app: web.Application) -> AbstractAsyncContextManager[None]:
    """The context manager of one cleanup_ctx entry, made as aiohttp makes it."""
    ctx = factory(app)
    if not isinstance(ctx, AbstractAsyncContextManager):
        ctx = asynccontextmanager(factory)(app)
    return ctx
