"""The one thing the plugin adds to the served app: a middleware, innermost, that logs
`testing.request.entered` for a request carrying the X-Graceful-Hold header just before its
handler runs. Requests without the header pass through untouched.

Logged and then handed to the handler in the same step of the loop: the handler has run up
to its first await before the loop can act on any stop request, so a test that saw the line
knows its request is in flight, without sleeping.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from graceful.lifecycle import loader
from graceful.logs import get_logger
from graceful.testing.http import HOLD_HEADER

log = get_logger("graceful.testing")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def mark_entered(request: web.Request, handler: Handler) -> web.StreamResponse:
    mark = request.headers.get(HOLD_HEADER)
    if mark is not None:
        log.info("testing.request.entered", hold=mark, method=request.method,
                 path=request.path)
    return await handler(request)


def add_marks(app: web.Application) -> None:
    """Append the middleware (innermost: after the app's own, auth included)."""
    if not app.frozen and mark_entered not in app.middlewares:
        app.middlewares.append(mark_entered)


def marked(source: loader.AppSource) -> Callable[[], Awaitable[web.Application]]:
    """A factory serving `source` with the middleware: for an in-process runtime."""
    async def build() -> web.Application:
        app = await loader.build_app(source)
        add_marks(app)
        return app
    return build
