"""Ordered shutdown hooks: run last-registered first, each under its own timeout.

A hook is a callable taking the application and returning None or an awaitable. One that
raises or times out is logged with its name and the others still run (aiohttp's
CleanupContext keeps going on error too); the caller learns which failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web, web_app

from graceful.errors import StartupError
from graceful.logs import get_logger

Hook = Callable[[web.Application], Awaitable[None] | None]
HOOKS: web.AppKey[list[ShutdownHook]] = web.AppKey("graceful.hooks", list)

log = get_logger()


@dataclasses.dataclass(frozen=True)
class ShutdownHook:
    func: Hook
    name: str
    timeout: float | None  # None: the runtime's --hook-timeout


@dataclasses.dataclass(frozen=True)
class HookFailure:
    name: str
    error: str


def add_hook(app: web.Application, func: Hook, *, name: str | None = None,
             timeout: float | None = None) -> Hook:
    """Register `func(app)` to run at stop, after the drain and before the checkpoint flush.

    Hooks run in reverse order of registration. Usable as a decorator.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"hook timeout must be > 0 seconds, got {timeout}")
    if HOOKS not in app:
        app[HOOKS] = []
    app[HOOKS].append(ShutdownHook(func, name or _name_of(func), timeout))
    return func


def _name_of(func: Any) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


async def run_step(name: str, step: Callable[[], Awaitable[Any] | Any],
                   timeout: float) -> HookFailure | None:
    """Run one step under `timeout` seconds; a failure is logged and returned, not raised."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(max(timeout, 0)):
            result = step()
            if inspect.isawaitable(result):
                await result
    except TimeoutError:
        log.error("hook.timeout", hook=name, timeout_s=round(timeout, 3))
        return HookFailure(name, f"timed out after {timeout:.3g}s")
    except Exception as err:  # a hook's failure must not stop the others
        log.error("hook.failed", hook=name, error=repr(err), exc_info=err)
        return HookFailure(name, repr(err))
    log.debug("hook.done", hook=name, took_s=round(time.monotonic() - started, 4))
    return None


async def run_hooks(app: web.Application, hooks: list[ShutdownHook], default_timeout: float,
                    until: Callable[[], float]) -> list[HookFailure]:
    """Run `hooks` LIFO; each gets min(its timeout, `until()` seconds left)."""
    failures = []
    for hook in reversed(hooks):
        budget = min(hook.timeout or default_timeout, until())
        failure = await run_step(hook.name, lambda hook=hook: hook.func(app), budget)
        if failure:
            failures.append(failure)
    return failures


def bound_startup(app: web.Application, timeout: float) -> None:
    """Give each of the app's on_startup handlers (cleanup_ctx included) `timeout` seconds;
    one that raises or hangs becomes a StartupError that names it."""
    for index, callback in enumerate(app.on_startup):
        app.on_startup[index] = _bounded(callback, timeout)


def _bounded(callback: Callable[[web.Application], Awaitable[None]],
             timeout: float) -> Callable[[web.Application], Awaitable[None]]:
    owner = getattr(callback, "__self__", None)
    name = "cleanup_ctx" if isinstance(owner, web_app.CleanupContext) else _name_of(callback)

    async def step(app: web.Application) -> None:
        try:
            async with asyncio.timeout(timeout):
                await callback(app)
        except TimeoutError as err:
            raise StartupError(f"on_startup {name} did not finish within {timeout:g}s") from err
        except Exception as err:
            raise StartupError(f"on_startup {name} raised {err!r}") from err

    return step
