"""Ordered shutdown hooks: run last-registered first, each under its own timeout.

A hook is a callable taking the application and returning None or an awaitable. One that
raises or times out is logged with its name and the others still run (aiohttp's
CleanupContext keeps going on error too); the caller learns which failed. A sync hook runs
in a daemon thread under the same timeout: a hook that blocks cannot hold the stop, and a
thread that never returns is abandoned rather than joined at exit.

aiohttp's own signals (on_startup, on_shutdown, on_cleanup) are run one handler at a time
too, each bounded and named by its function: a sub-application's handlers (which aiohttp
relays through one anonymous handler of the parent) and each cleanup_ctx entry included.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiohttp import web

from graceful.errors import StartupError
from graceful.http import aiohttp_signals
from graceful.logs import get_logger

Hook = Callable[[web.Application], Awaitable[None] | None]
HOOKS: web.AppKey[list[ShutdownHook]] = web.AppKey("graceful.lifecycle.hooks", list)
Step = tuple[str, Callable[[], Awaitable[Any] | Any]]

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

    Hooks run in reverse order of registration; a sub-application's run before its
    parent's. `func` may be async or sync (a sync one runs in a thread). Usable as a
    decorator.
    """
    if timeout is not None and not timeout > 0:
        raise ValueError(f"hook timeout must be > 0 seconds, got {timeout}")
    if HOOKS not in app:
        app[HOOKS] = []
    app[HOOKS].append(ShutdownHook(func, name or _name_of(func), timeout))
    return func


def _name_of(func: Any) -> str:
    return getattr(func, "__qualname__", None) or repr(func)


def app_hooks(app: web.Application) -> list[ShutdownHook]:
    """The hooks registered on `app` and its sub-applications, in the order to be run
    backwards: a sub-app's after its parent's, so that they run before them."""
    found = list(app.get(HOOKS, []))
    for subapp in aiohttp_signals.subapps(app):
        found += app_hooks(subapp)
    return found


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


async def run_steps(steps: list[Step], default_timeout: float,
                    until: Callable[[], float]) -> list[HookFailure]:
    """Run `steps` in order; each gets min(`default_timeout`, `until()` seconds left)."""
    failures = []
    for name, step in steps:
        failure = await run_step(name, step, min(default_timeout, until()))
        if failure:
            failures.append(failure)
    return failures


async def run_hooks(app: web.Application, hooks: list[ShutdownHook], default_timeout: float,
                    until: Callable[[], float]) -> list[HookFailure]:
    """Run `hooks` LIFO; each gets min(its timeout, `until()` seconds left)."""
    failures = []
    for hook in reversed(hooks):
        budget = min(hook.timeout or default_timeout, until())
        failure = await run_step(hook.name, lambda hook=hook: call(hook.func, app), budget)
        if failure:
            failures.append(failure)
    return failures


def call(func: Callable[[web.Application], Any], app: web.Application) -> Awaitable[Any]:
    """`func(app)` awaited on the loop if async, else in a daemon thread of its own."""
    if _is_async(func):
        return func(app)
    return _in_thread(func, app)


def _is_async(func: Any) -> bool:
    return (inspect.iscoroutinefunction(func)
            or inspect.iscoroutinefunction(type(func).__call__))


async def _in_thread(func: Callable[[web.Application], Any], app: web.Application) -> None:
    # Not the loop's default executor: its threads are joined at exit, so one blocked hook
    # would hold the process after the timeout; a daemon thread is abandoned instead.
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(result: Any = None, error: BaseException | None = None) -> None:
        if done.done():
            return  # the timeout fired first
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def work() -> None:
        try:
            result, error = func(app), None
        except Exception as err:  # handed to the loop, raised there
            result, error = None, err
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=f"graceful.hook {_name_of(func)}", daemon=True).start()
    result = await done
    if inspect.isawaitable(result):  # a sync callable that returned a coroutine
        await result


def signal_steps(app: web.Application, signal: list[Any]) -> list[Step]:
    """One step per handler of an on_shutdown/on_cleanup `signal`, with its name: a
    sub-app's handlers one by one, each cleanup_ctx entry one by one (last entered first)."""
    return list(_signal_steps(app, signal))


def _signal_steps(app: web.Application, signal: list[Any]) -> Iterator[Step]:
    for callback in signal:
        relay = aiohttp_signals.subapp_relay(callback)
        contexts = aiohttp_signals.cleanup_context(callback)
        if relay is not None:
            yield from _signal_steps(*relay)
        elif contexts is not None:
            yield from _exits(contexts)
        else:
            yield _name_of(callback), lambda callback=callback: callback(app)


def _exits(contexts: Any) -> Iterator[Step]:
    for exit_ in reversed(aiohttp_signals.entered(contexts)):
        yield _name_of_context(exit_), lambda exit_=exit_: exit_.__aexit__(None, None, None)


def cleanup_steps(app: web.Application) -> list[Step]:
    """What aiohttp's `app.cleanup()` runs, one step per handler: on_cleanup once the app
    has started; after a start that failed, only the cleanup_ctx entries entered."""
    if app.on_cleanup.frozen:
        return signal_steps(app, app.on_cleanup)
    return list(_exits(app.cleanup_ctx))


def bound_startup(app: web.Application, timeout: float) -> None:
    """Give each of the app's on_startup handlers (each cleanup_ctx entry and each sub-app
    handler included) `timeout` seconds; one that raises or hangs becomes a StartupError
    that names it."""
    for index, callback in enumerate(app.on_startup):
        app.on_startup[index] = _startup_step(app, callback, timeout)


def _startup_step(app: web.Application, callback: Callable[[web.Application], Awaitable[None]],
                  timeout: float) -> Callable[[web.Application], Awaitable[None]]:
    relay = aiohttp_signals.subapp_relay(callback)
    contexts = aiohttp_signals.cleanup_context(callback)
    if relay is not None:
        subapp, signal = relay
        steps = [_startup_step(subapp, each, timeout) for each in signal]

        async def run_subapp(_: web.Application) -> None:
            for step in steps:
                await step(subapp)

        return run_subapp
    if contexts is not None:
        async def enter_contexts(_: web.Application) -> None:
            for factory in contexts:
                async def enter(factory: Any = factory) -> Any:
                    ctx = aiohttp_signals.context_of(factory, app)
                    await ctx.__aenter__()
                    return ctx

                ctx = await _bounded(_name_of(factory), timeout, enter)
                aiohttp_signals.entered(contexts).append(_NamedExit(_name_of(factory), ctx))

        return enter_contexts

    async def run(_: web.Application) -> None:
        await _bounded(_name_of(callback), timeout, lambda: callback(app))

    return run


async def _bounded(name: str, timeout: float, step: Callable[[], Awaitable[Any]]) -> Any:
    try:
        async with asyncio.timeout(timeout):
            return await step()
    except TimeoutError as err:
        raise StartupError(f"on_startup {name} did not finish within {timeout:g}s") from err
    except Exception as err:
        raise StartupError(f"on_startup {name} raised {err!r}") from err


@dataclasses.dataclass(frozen=True)
class _NamedExit:
    """A cleanup_ctx entry that was entered, with the name of its function."""

    name: str
    ctx: Any

    async def __aexit__(self, *exc_info: Any) -> Any:
        return await self.ctx.__aexit__(*exc_info)


def _name_of_context(exit_: Any) -> str:
    if isinstance(exit_, _NamedExit):
        return exit_.name
    return _name_of(getattr(exit_, "func", None) or type(exit_))
