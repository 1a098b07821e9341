"""Per-route drain deadlines: a stream route cut after 2 s while uploads keep the budget.

    @graceful.drain_deadline(2)
    async def events(request): ...

    app.router.add_get("/events", events)                     # or, on the route itself:
    graceful.drain_deadline(2, app.router.add_get("/events", events))

The mark is an attribute of the handler (the function, or the class of a class-based view),
so the decorator works above or below a route table's `@routes.get`, and reaches
sub-applications. A route's deadline counts from the drain start, like --drain-timeout, and
never extends it. During the drain, RouteCutter cancels each request past its route's
deadline, gives it --cancel-grace to unwind, and logs `drain.deadline` with the route's
deadline; the rest of the drain goes on.

A cancelled request is a *stream* when its response had already started (headers sent:
server-sent events, chunked bodies, websockets); else a plain request. They are counted
apart (`cancelled_streams`, `cancelled_requests`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from graceful.errors import ConfigError
from graceful.logs import get_logger

if TYPE_CHECKING:
    from graceful.http.drain import ConnectionTracker
    from graceful.http.protocol import InFlight

T = TypeVar("T")
ATTR = "__graceful_drain_deadline__"
# A request that reaches a route after its deadline (from the accept queue, pipelined) is
# found by a re-scan this often; the drain's own events do not say when a request starts.
RESCAN_S = 0.25

log = get_logger()


def drain_deadline(seconds: float, target: T | None = None) -> Any:
    """Give a handler, a class-based view or a route (what `add_get` returns) its own drain
    deadline, in seconds from the drain start. As a decorator: `@drain_deadline(2)`."""
    if (not isinstance(seconds, int | float) or isinstance(seconds, bool)
            or math.isnan(seconds) or math.isinf(seconds) or seconds < 0):
        raise ConfigError(f"drain_deadline must be a finite number of seconds >= 0, "
                          f"got {seconds!r}")

    def mark(handler: T) -> T:
        where: Any = handler
        if isinstance(handler, web.AbstractRoute):
            where = handler.handler
        where = getattr(where, "__func__", where)  # a bound method: its function
        setattr(where, ATTR, float(seconds))
        return handler

    return mark if target is None else mark(target)


def deadline_of(handler: Any) -> float | None:
    value = getattr(getattr(handler, "__func__", handler), ATTR, None)
    return value if isinstance(value, float) else None


def match_info(request: web.BaseRequest) -> Any:
    """The request's route match, or None before routing (and for a bare web.Server)."""
    try:
        return request.match_info  # type: ignore[attr-defined]
    except (AssertionError, AttributeError):  # aiohttp asserts it is resolved
        return None


def of_request(request: web.BaseRequest) -> float | None:
    info = match_info(request)
    return deadline_of(info.handler) if info is not None else None


def is_stream(request: web.BaseRequest | None) -> bool:
    """Its response has started: bytes (headers at least) went to the client."""
    writer = getattr(request, "writer", None) if request is not None else None
    return getattr(writer, "output_size", 0) > 0


def subapps(app: web.Application) -> Iterator[web.Application]:
    for resource in app.router.resources():
        subapp = resource.get_info().get("app")
        if isinstance(subapp, web.Application):
            yield subapp
            yield from subapps(subapp)


def routes_with_deadlines(app: web.Application) -> dict[str, float]:
    """Path to its deadline, for every marked route of `app` and its sub-applications:
    logged at start."""
    found: dict[str, float] = {}
    for each in [app, *subapps(app)]:
        for route in each.router.routes():
            seconds = deadline_of(route.handler)
            if seconds is not None:
                found[route.resource.canonical if route.resource is not None else "?"] = seconds
    return found


@dataclasses.dataclass(frozen=True)
class Cut:
    method: str
    path: str
    age_s: float
    unwound: bool
    stream: bool


class RouteCutter:
    """During the drain: cancel each request once its route's deadline has passed."""

    def __init__(self, tracker: ConnectionTracker, *, began: float, drain_until: float,
                 grace: float, request_of: Callable[[InFlight], web.BaseRequest | None]
                 ) -> None:
        self._tracker = tracker
        self._began = began  # time.monotonic() of the drain start, the stop budget's clock
        self._drain_until = drain_until
        self._grace = grace
        self._request_of = request_of
        self._seen: set[int] = set()  # ids of the InFlight protocols already cut
        self._cuts: set[asyncio.Task[None]] = set()
        self._scanning: asyncio.Task[None] | None = None
        self.cut: list[Cut] = []

    @classmethod
    def start(cls, app: web.Application, tracker: ConnectionTracker, **kwargs: Any
              ) -> RouteCutter | None:
        """A cutter scanning the drain, or None when no route of `app` has a deadline (the
        drain then pays nothing for this)."""
        if not routes_with_deadlines(app):
            return None
        cutter = cls(tracker, **kwargs)
        cutter._scanning = asyncio.ensure_future(cutter.run())
        return cutter

    async def finish(self, drained: bool) -> None:
        """The drain is over: stop scanning. Cuts in progress are waited for when the drain
        ended by itself (their connections are closed, they only have to log); else they are
        abandoned, and the drain's own deadline cancels and logs what is left."""
        if self._scanning is not None:
            self._scanning.cancel()
        if drained and self._cuts:
            await asyncio.wait(list(self._cuts), timeout=self._grace + 0.1)
        for task in list(self._cuts):
            task.cancel()

    async def run(self) -> None:
        """Until cancelled (at the end of the drain)."""
        try:
            while True:
                now = time.monotonic()
                due: dict[float, list[tuple[InFlight, web.BaseRequest | None]]] = {}
                next_at = now + RESCAN_S
                for item in self._tracker.requests_in_flight():
                    request = self._request_of(item)
                    seconds = of_request(request) if request is not None else None
                    if seconds is None or id(item.protocol) in self._seen:
                        continue
                    at = self._began + seconds
                    if at >= self._drain_until:
                        continue  # the drain's own deadline comes first
                    if at <= now:
                        due.setdefault(seconds, []).append((item, request))
                    else:
                        next_at = min(next_at, at)
                for seconds, items in sorted(due.items()):
                    self._seen.update(id(item.protocol) for item, _ in items)
                    task = asyncio.ensure_future(self._cut(seconds, items))
                    self._cuts.add(task)
                    task.add_done_callback(self._cuts.discard)
                await asyncio.sleep(max(next_at - time.monotonic(), 0))
        except asyncio.CancelledError:
            pass  # finish() decides what becomes of the cuts in progress

    async def _cut(self, seconds: float,
                   items: list[tuple[InFlight, web.BaseRequest | None]]) -> None:
        now = time.monotonic()
        streams = {id(item): is_stream(request) for item, request in items}
        waits: list[asyncio.Future[Any]] = []
        for item, _ in items:
            if item.task is not None and item.task in self._tracker.orphans:
                item.task.cancel()  # its client is gone: the task ends with the handler
                waits.append(item.task)
            elif not item.done:
                waits.append(item.protocol.cancel_request())
        if waits:
            await asyncio.wait(waits, timeout=self._grace)
        cuts = [Cut(item.method, item.path, round(now - item.started, 3), item.done,
                    streams[id(item)]) for item, _ in items]
        for item, _ in items:
            if not item.done:
                item.protocol.abort()
        self.cut += cuts
        log.warning("drain.deadline", route_deadline_s=seconds, cancelled=len(cuts),
                    cancelled_streams=sum(c.stream for c in cuts),
                    cancelled_requests=sum(not c.stream for c in cuts), forced=False,
                    requests=[{"method": c.method, "path": c.path, "age_s": c.age_s,
                               "unwound": c.unwound, "stream": c.stream} for c in cuts])
