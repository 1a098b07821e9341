"""An app as operators' apps are: it changes its own environment at start (python-dotenv
style), starts a helper process in on_startup that logs on, and reads a `.env` file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aiohttp import web

HELPER = ("import sys, time\n"
          "for i in range(400):\n"
          "    print(f'helper line {i}', file=sys.stderr, flush=True)\n"
          "    time.sleep(0.05)\n")


def load_dotenv(path: Path) -> None:
    """python-dotenv's default: a variable already set is kept."""
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() not in os.environ:
                os.environ[key.strip()] = value.strip()


async def start_helper(app: web.Application) -> None:
    """START_HELPER=1: in the worker's process group; =session: in a session of its own (a
    daemon's setsid), out of the group its worker's leftovers are ended by."""
    if os.environ.get("START_HELPER"):
        app["helper"] = subprocess.Popen([sys.executable, "-c", HELPER],
                                         start_new_session=os.environ["START_HELPER"]
                                         == "session")


async def env(request: web.Request) -> web.Response:
    return web.Response(text=f"{os.environ.get('DEPLOYED', '-')} "
                             f"{os.environ.get('CHANGED_BY_APP', '-')}\n")


async def helper(request: web.Request) -> web.Response:
    proc = request.app.get("helper")
    return web.Response(text=f"{proc.pid if proc else 0}\n")


def create_app() -> web.Application:
    load_dotenv(Path(".env"))
    os.environ["CHANGED_BY_APP"] = os.environ.get("CHANGED_BY_APP", "") + "x"
    app = web.Application()
    app.on_startup.append(start_helper)
    app.router.add_get("/env", env)
    app.router.add_get("/helper", helper)
    return app
