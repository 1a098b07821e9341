"""The deployed app (tests/deployed.py) plus a route that leaves an orphan behind, as an app
that starts a helper through a shell or a daemonizing tool does.

GET /orphan?s=SECONDS starts a process that forks a grandchild and exits at once; the
grandchild, whose parent is gone, is reparented to PID 1 of its namespace (or to a
subreaper), lives SECONDS and exits. The answer is the grandchild's pid, as this process
sees it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

from aiohttp import web

from tests.deployed import create_app as deployed_app

DOUBLE_FORK = """
import os, sys, time
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the app's pipe is the middle's
    time.sleep(float(sys.argv[1]))
    os._exit(0)
print(pid, flush=True)
os._exit(0)
"""


async def orphan(request: web.Request) -> web.Response:
    seconds = request.query.get("s", "1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", DOUBLE_FORK, seconds, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    await asyncio.wait_for(proc.wait(), 10)  # the middle process: exits at once
    return web.Response(text=line.decode().strip())


def create_app() -> web.Application:
    app = deployed_app()
    app.router.add_get("/orphan", orphan)
    return app
