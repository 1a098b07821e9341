"""The app the Wine suite serves: tests.apps' routes plus /raise-break, which raises SIGBREAK
inside the process from another thread a moment later, while the loop sleeps in IOCP, and
/pid?s=S, which answers with the pid of the worker that served it after S seconds.
`with_helper` also starts a helper process in on_startup, as apps start a sidecar, and never
stops it: the helper writes the time to WINE_TEST_HELPERS/<worker pid>-<its pid>.beat every
0.2 s, for at most a minute."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading

from aiohttp import web

from tests.apps import _routes


async def raise_break(request: web.Request) -> web.Response:
    timer = threading.Timer(0.3, signal.raise_signal, [signal.SIGBREAK])  # type: ignore[attr-defined]
    timer.start()
    return web.Response(text="raising SIGBREAK\n")


async def pid_slow(request: web.Request) -> web.Response:
    """Which worker answered, after S seconds (a request in flight on each worker)."""
    await asyncio.sleep(float(request.query.get("s", "0")))
    return web.Response(text=f"pid {os.getpid()}\n")


def app() -> web.Application:
    refuse = os.environ.get("WINE_TEST_REFUSE_START")  # a start that fails on demand
    if refuse and os.path.exists(refuse):
        raise RuntimeError(f"refused to start: {refuse} exists")
    application = _routes(web.Application())
    application.router.add_get("/raise-break", raise_break)
    application.router.add_get("/pid", pid_slow)
    return application


HEARTBEAT = """
import os, sys, time
path = os.path.join(sys.argv[1], f"{sys.argv[2]}-{os.getpid()}.beat")
for _ in range(300):
    with open(path, "w") as beat:
        beat.write(repr(time.time()))
    time.sleep(0.2)
"""


async def start_helper(application: web.Application) -> None:
    subprocess.Popen([sys.executable, "-c", HEARTBEAT, os.environ["WINE_TEST_HELPERS"],
                      str(os.getpid())],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)


def with_helper() -> web.Application:
    application = app()
    application.on_startup.append(start_helper)
    return application


async def slow_startup(application: web.Application) -> None:
    """A start that takes as many seconds as WINE_TEST_SLOW_START's file says, if it exists."""
    slow = os.environ.get("WINE_TEST_SLOW_START")
    if slow and os.path.exists(slow):
        with open(slow) as seconds:
            await asyncio.sleep(float(seconds.read()))


def raw_output() -> web.Application:
    """`app`, which also writes raw lines as an app does (print, a library's warning), and
    whose start is slow on demand."""
    application = app()
    print("app built", flush=True)
    print("a raw line on stderr", file=sys.stderr, flush=True)
    application.on_startup.append(slow_startup)
    return application
