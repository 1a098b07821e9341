"""How aiohttp wires an Application's signals, read from its objects: the one place that
knows (hooks.py runs each handler on its own, bounded and named).

What it relies on, all in aiohttp/web_app.py (tests/test_hooks.py fails if they move):
- `Application._reg_subapp_signals` appends to the parent's on_startup/on_shutdown/
  on_cleanup one closure `handler` per signal, holding `subsig` (the sub-app's signal)
  and `subapp`;
- the cleanup_ctx list (`CleanupContext`) is registered as its bound methods `_on_startup`
  and `_on_cleanup`, and keeps the entered context managers in `_exits`;
- a cleanup_ctx entry returns an async context manager or is an async generator function;
- a sub-app's resource answers `get_info()` with its `app`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from aiohttp import web, web_app

_RELAY_QUALNAME = "Application._reg_subapp_signals.<locals>.reg_handler.<locals>.handler"


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
    if getattr(callback, "__qualname__", None) != _RELAY_QUALNAME:
        return None
    cells = dict(zip(callback.__code__.co_freevars,
                     (cell.cell_contents for cell in callback.__closure__ or ()), strict=True))
    return cells["subapp"], cells["subsig"]


def cleanup_context(callback: Any) -> web_app.CleanupContext | None:
    """The app's cleanup_ctx list when `callback` is how aiohttp runs it."""
    owner = getattr(callback, "__self__", None)
    return owner if isinstance(owner, web_app.CleanupContext) else None


def entered(contexts: web_app.CleanupContext) -> list[Any]:
    """The cleanup_ctx entries entered so far (aiohttp exits them last first)."""
    return contexts._exits


def context_of(factory: Any, app: web.Application) -> AbstractAsyncContextManager[None]:
    """The context manager of one cleanup_ctx entry, made as aiohttp makes it."""
    ctx = factory(app)
    if not isinstance(ctx, AbstractAsyncContextManager):
        ctx = asynccontextmanager(factory)(app)
    return ctx
