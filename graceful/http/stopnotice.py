"""What a handler sees of the stop: `graceful.stopping(request)`.

A stream that never ends by itself (server-sent events, a long-poll, a websocket) holds the
drain until its deadline and is then cut mid-event. Told that the stop has begun, it can
send its last event and end its response cleanly instead:

    stop = graceful.stopping(request)
    async for _ in stop.every(0.1):       # every 0.1 s until the stop begins
        await response.write(b"data: tick\\n\\n")
    await response.write(b"event: bye\\ndata: server stopping\\n\\n")
    await response.write_eof()

When it fires: under graceful, when the drain begins (the listeners have closed, after
--pre-stop-delay, before aiohttp's on_shutdown), so that a client reconnecting after its
stream ended finds another server rather than this one, still serving through the pre-stop
delay. Under web.run_app or pytest-aiohttp it fires with the application's on_shutdown when
`graceful.stopping(app)` was called before the application started (in its factory); else
it never fires there (aiohttp's on_shutdown cannot take a handler once the app has started).

What kind of stop it is, `stop.kind`, is one of KINDS: "stop"; "pause" (SIGUSR1, the SCM's
PAUSE: the process stays and serves again after a continue, when the notice is cleared);
"restart" (new workers of graceful serve already serve the same sockets: a client may
reconnect at once, and a stream can resume there, with Last-Event-ID for server-sent
events). A pause is told to requests only: an application's background work goes on
through a pause, so `graceful.stopping(app)` fires at a stop or a restart, not at a pause.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Generator
from typing import Any, Literal, TypeVar, get_args

from aiohttp import web

from graceful.http import route_deadlines

T = TypeVar("T")

StopKind = Literal["stop", "pause", "restart"]
KINDS: tuple[StopKind, ...] = get_args(StopKind)

# One notice per application, beside it: aiohttp warns when a started app's mapping changes.
_NOTICES: weakref.WeakKeyDictionary[web.Application, Notice] = weakref.WeakKeyDictionary()


class Notice:
    """The stop, as the applications of one process learn of it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()  # any kind: what requests watch
        self._final = asyncio.Event()  # a stop or a restart, never a pause: what apps watch
        self.kind: StopKind | Literal[""] = ""  # one of KINDS once fired
        # time.monotonic() of the drain deadline and of the drain start, when known
        self.drain_until: float | None = None
        self.began: float | None = None

    def fire(self, kind: StopKind = "stop", *, began: float | None = None,
             drain_until: float | None = None) -> None:
        """Fire as `kind`. Firing again as the same kind does nothing; a stop that comes
        during a pause takes over its kind and its deadline."""
        if kind not in KINDS:
            raise ValueError(f"a stop's kind is one of {', '.join(KINDS)}, not {kind!r}")
        if self._event.is_set() and (self.kind == kind or self._final.is_set()):
            return
        self.kind, self.began, self.drain_until = kind, began, drain_until
        self._event.set()
        if kind != "pause":
            self._final.set()

    def pause_over(self) -> None:
        """The pause has ended (a continue): requests are served as before it."""
        if self.kind == "pause":
            self._event.clear()
            self.kind, self.began, self.drain_until = "", None, None


class Stopping:
    """Whether the stop has begun, for one request (or an application's background task).

    `bool(stop)` and `stop.is_set()` are the flag; `await stop` waits for it; `stop.wait(t)`
    is a sleep that the stop cuts short; `async for _ in stop.every(t)` a loop that ends
    when the stop begins; `await stop.race(aw)` an await that the stop cuts short.
    """

    __slots__ = ("_deadline", "_event", "_notice")

    def __init__(self, notice: Notice, deadline: float | None = None, *,
                 pauses: bool = True) -> None:
        self._notice = notice
        self._deadline = deadline  # the route's own drain deadline, seconds from drain start
        self._event = notice._event if pauses else notice._final  # pauses: told of them

    def is_set(self) -> bool:
        return self._event.is_set()

    __bool__ = is_set

    @property
    def kind(self) -> StopKind | Literal[""]:
        """"" before the stop; then one of KINDS: "stop", "pause" or "restart"."""
        return self._notice.kind if self._event.is_set() else ""

    def time_left(self) -> float | None:
        """Seconds until this request is cancelled (its route's drain deadline, else the
        drain's); None before the stop, or when the server does not say (web.run_app)."""
        notice = self._notice
        if notice.drain_until is None or not self._event.is_set():
            return None
        until = notice.drain_until
        if self._deadline is not None and notice.began is not None:
            until = min(until, notice.began + self._deadline)
        return max(until - time.monotonic(), 0.0)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for the stop, at most `timeout` seconds; True once the stop has begun."""
        if self.is_set():
            return True
        if timeout is None:
            await self._event.wait()
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        return True

    def __await__(self) -> Generator[Any, None, bool]:
        return self.wait().__await__()

    async def every(self, seconds: float) -> AsyncIterator[int]:
        """Yield 0, 1, 2, ... at once and then every `seconds`, until the stop begins."""
        count = 0
        while not self.is_set():
            yield count
            count += 1
            await self.wait(seconds)

    async def race(self, awaitable: Awaitable[T], default: Any = None) -> T | Any:
        """The result of `awaitable`, or `default` if the stop begins first (the awaitable
        is then cancelled)."""
        work = asyncio.ensure_future(awaitable)
        if self.is_set():
            work.cancel()
            return default
        stop = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait([work, stop], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not work.done():
                work.cancel()
        if work.done() and not work.cancelled():
            return work.result()
        return default


def stopping(holder: web.Application | web.Request) -> Stopping:
    """Whether the stop has begun, for `holder` (a request, or an application for its
    background tasks, which are not told of a pause). Works whoever serves the app; see the
    module's docstring for when it fires under each."""
    if isinstance(holder, web.BaseRequest):
        info = getattr(holder, "match_info", None)
        apps = info.apps if info is not None else ()
        notice = next((n for app in apps if (n := _NOTICES.get(app)) is not None), None)
        if notice is None:
            notice = notice_of(apps[0] if apps else holder.app)
        return Stopping(notice, route_deadlines.of_request(holder))
    return Stopping(notice_of(holder), pauses=False)


def notice_of(app: web.Application) -> Notice:
    """`app`'s notice, created when it has none; created before the app starts, it also
    fires with the app's on_shutdown (for web.run_app and pytest-aiohttp)."""
    notice = _NOTICES.get(app)
    if notice is None:
        notice = _NOTICES[app] = Notice()
        if not app.on_shutdown.frozen:
            app.on_shutdown.append(_fire_on_shutdown)
    return notice


def attach(app: web.Application) -> Notice:
    """The runtime's call at start: the root application's notice exists before any request
    asks for it (one created after the stop would never fire)."""
    notice = _NOTICES.get(app)
    if notice is None:
        notice = _NOTICES[app] = Notice()
    return notice


async def _fire_on_shutdown(app: web.Application) -> None:
    notice = _NOTICES.get(app)
    if notice is not None:
        notice.fire("stop")


def fire(app: web.Application, kind: StopKind = "stop", *, began: float,
         drain_until: float) -> None:
    """The runtime's call when the drain of a stop (or a pause) begins: every notice of
    `app` and its sub-applications fires."""
    for notice in _notices(app):
        notice.fire(kind, began=began, drain_until=drain_until)


def pause_over(app: web.Application) -> None:
    """The runtime's call at a continue: the notices fired by the pause are cleared."""
    for notice in _notices(app):
        notice.pause_over()


def _notices(app: web.Application) -> list[Notice]:
    return [notice for each in [app, *route_deadlines.subapps(app)]
            if (notice := _NOTICES.get(each)) is not None]
