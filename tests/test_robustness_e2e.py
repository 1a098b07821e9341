"""Surroundings production has and a terminal does not: the exit code tells the truth.

1. stdout closed (`>&-`), stdin too: a clean stop exits 0 on asyncio and on uvloop (a closed
   descriptor used to be reused by the loop: libuv aborted with 134, asyncio exited 1).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, ServerProcess
from tests.rawhttp import get


def _serve_in_shell(redirects: str, *args: str) -> ServerProcess:
    """The CLI exec'd by sh with `redirects` applied (its pid is the server's)."""
    command = (f'exec "{sys.executable}" -m graceful serve "$@" --host 127.0.0.1 --port 0 '
               f"--log-format json {redirects}")
    proc = subprocess.Popen(["sh", "-c", command, "sh", *args], cwd=ROOT, env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    server = ServerProcess.__new__(ServerProcess)
    ServerProcess._attach(server, proc)
    return server


@pytest.fixture
def shell_serve():
    started: list[ServerProcess] = []

    def start(redirects: str, *args: str) -> ServerProcess:
        started.append(_serve_in_shell(redirects, *args))
        return started[-1].started()

    yield start
    for server in started:
        server.kill()


@pytest.mark.parametrize("redirects", [">&-", "<&- >&-"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_closed_stdout_stops_cleanly(shell_serve, loop, redirects):
    """1."""
    server = shell_serve(redirects, "tests.apps:basic", "--loop", loop)
    assert (await get(server.port, "/fast")).status == 200
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    assert server.names()[-1] == "process.exit"
