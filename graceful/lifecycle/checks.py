"""Startup checks: the app's dependencies, tried before it serves, retried while it serves.

    graceful.add_check(app, "database", ping_db)                    # required
    graceful.add_check(app, "cache", ping_cache, required=False)    # optional

At start, after the app is built and before its on_startup, every check is tried, all at
once, each try bounded by the check's `timeout`:
- a required check that fails is retried with backoff (doubling from `backoff` up to
  MAX_BACKOFF_S) until it passes, until `retries` retries are spent, or until
  --startup-timeout; then the start fails (exit 1) naming the check and its last error;
- an optional check that fails is logged (`check.failed`) and the server starts anyway,
  *degraded*: readiness says "degraded" (200, or 503 with --no-degraded-ready) and
  `graceful.degraded(request)` names the checks failing, so the app can serve placeholders.
  Once READY it is retried in the background with backoff until it passes
  (`check.recovered`). An optional check delays the start by at most its `timeout`.
A stop request cancels the retries at once: a try under way is not waited for (nor is a
sync check's thread: it is a daemon). A stop during the start's retries ends the start.

A check is `func(app)`, async or sync (a sync one runs in a daemon thread); it fails by
raising. Its error goes to the log, never to /readyz.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from graceful.bridge.stop import StopObserver
from graceful.errors import StartupError
from graceful.http import aiohttp_signals
from graceful.lifecycle import hooks
from graceful.logs import get_logger

CheckFunc = Callable[[web.Application], Awaitable[Any] | Any]
MAX_BACKOFF_S = 10.0

log = get_logger()


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    func: CheckFunc
    required: bool
    timeout: float
    retries: int | None  # None: until --startup-timeout (required); forever (optional)
    backoff: float

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number `attempt` (1-based)."""
        return min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_S)


CHECKS: web.AppKey[list[Check]] = web.AppKey("graceful.lifecycle.checks", list)


class Status:
    """The optional checks failing now, by name, with their last error."""

    def __init__(self) -> None:
        self.failing: dict[str, str] = {}

    @property
    def degraded(self) -> bool:
        return bool(self.failing)


STATUS: web.AppKey[Status] = web.AppKey("graceful.lifecycle.checks.status", Status)


def add_check(app: web.Application, name: str, func: CheckFunc, *, required: bool = True,
              timeout: float = 5.0, retries: int | None = None,
              backoff: float = 0.5) -> CheckFunc:
    """Register a check of one of the app's dependencies, tried at start (see the module's
    docstring). `timeout` bounds each try, `backoff` is the first pause between tries (it
    doubles, up to MAX_BACKOFF_S), `retries` caps the retries (None: no cap)."""
    if not timeout > 0:
        raise ValueError(f"check timeout must be > 0 seconds, got {timeout}")
    if not backoff >= 0:
        raise ValueError(f"check backoff must be >= 0 seconds, got {backoff}")
    if retries is not None and retries < 0:
        raise ValueError(f"check retries must be >= 0, got {retries}")
    if CHECKS not in app:
        app[CHECKS] = []
    app[CHECKS].append(Check(name, func, required, timeout, retries, backoff))
    return func


def degraded(where: web.Application | web.BaseRequest | Mapping[Any, Any]) -> frozenset[str]:
    """The names of the optional checks failing now (empty: all is well, or no runtime)."""
    mapping = where.config_dict if isinstance(where, web.BaseRequest) else where
    status = mapping.get(STATUS)
    return frozenset(status.failing) if status is not None else frozenset()


class Monitor(StopObserver):
    """Runs an app's checks: at start, then the failing optional ones in the background
    from READY until the stop."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.checks = _all_checks(app)
        self.status = Status()
        self._retrying: list[asyncio.Task[None]] = []
        self._startup_timeout = 0.0
        if self.checks:  # every app sees the same status: a sub-app's handlers too
            for each in [app, *aiohttp_signals.subapps(app)]:
                each[STATUS] = self.status

    def degraded(self) -> bool:
        return self.status.degraded

    async def start(self, startup_timeout: float) -> None:
        """Try every check; raise StartupError for a required one that does not pass."""
        if not self.checks:
            return
        loop = asyncio.get_running_loop()
        self._startup_timeout = startup_timeout
        until = loop.time() + startup_timeout
        results = await asyncio.gather(*(self._first(check, until) for check in self.checks))
        for check, error in zip(self.checks, results, strict=True):
            if error is not None:
                self.status.failing[check.name] = error

    async def _first(self, check: Check, until: float) -> str | None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            attempt += 1
            budget = min(check.timeout, until - loop.time()) if check.required else check.timeout
            error = await _try(check, self.app, budget)
            if error is None:
                log.info("check.passed", check=check.name, attempt=attempt)
                return None
            log.warning("check.failed", check=check.name, required=check.required,
                        attempt=attempt, error=error)
            if not check.required:
                return error
            delay = check.delay(attempt)
            spent = check.retries is not None and attempt > check.retries
            if spent or loop.time() + delay >= until:
                why = "" if spent else f", --startup-timeout {self._startup_timeout:g}s spent"
                raise StartupError(f"startup check {check.name!r} failed ({attempt} tries{why})"
                                   f": {error}")
            await asyncio.sleep(delay)

    async def _retry(self, check: Check) -> None:
        attempt = 1  # the start's try
        while check.retries is None or attempt <= check.retries:
            await asyncio.sleep(check.delay(attempt))
            attempt += 1
            error = await _try(check, self.app, check.timeout)
            if error is None:
                self.status.failing.pop(check.name, None)
                log.info("check.recovered", check=check.name, attempt=attempt)
                return
            self.status.failing[check.name] = error
            log.debug("check.failed", check=check.name, required=False, attempt=attempt,
                      error=error)
        log.warning("check.given_up", check=check.name, attempts=attempt)

    def close(self) -> None:
        for task in self._retrying:
            task.cancel()
        self._retrying.clear()

    # StopObserver
    def ready(self) -> None:
        self._retrying = [asyncio.ensure_future(self._retry(check)) for check in self.checks
                          if check.name in self.status.failing]

    def phase(self, name: str, time_left_s: float) -> None:
        self.close()

    def stopped(self, exit_code: int) -> None:
        self.close()


async def _try(check: Check, app: web.Application, timeout: float) -> str | None:
    """None if the check passed, else what went wrong (for the log)."""
    try:
        async with asyncio.timeout(max(timeout, 0)):
            await hooks.call(check.func, app)
    except TimeoutError:
        return f"timed out after {timeout:.3g}s"
    except Exception as err:
        return f"{type(err).__name__}: {err}" if str(err) else repr(err)
    return None


def _all_checks(app: web.Application) -> list[Check]:
    found = list(app.get(CHECKS, []))
    for subapp in aiohttp_signals.subapps(app):
        found += subapp.get(CHECKS, [])
    return found

