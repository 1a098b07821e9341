"""The app the Wine suite serves: tests.apps' routes plus /raise-break, which raises SIGBREAK
inside the process from another thread a moment later, while the loop sleeps in IOCP."""

from __future__ import annotations

import signal
import threading

from aiohttp import web

from tests.apps import _routes


async def raise_break(request: web.Request) -> web.Response:
    timer = threading.Timer(0.3, signal.raise_signal, [signal.SIGBREAK])  # type: ignore[attr-defined]
    timer.start()
    return web.Response(text="raising SIGBREAK\n")


def app() -> web.Application:
    application = _routes(web.Application())
    application.router.add_get("/raise-break", raise_break)
    return application
