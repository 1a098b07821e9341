"""Surroundings production has and a terminal does not: the exit code tells the truth.

1. stdout closed (`>&-`), stdin too: a clean stop exits 0 on asyncio and on uvloop (a closed
   descriptor used to be reused by the loop: libuv aborted with 134, asyncio exited 1).
2. One more signal in the last half second, while a handler that swallows its cancellation
   gets its leftover grace (after the runtime has finished): logged and ignored, exit 3 (it
   used to be 1, "Aborted!", for SIGINT and -15 for SIGTERM).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT, ServerProcess
from tests.rawhttp import get, request_in_flight


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


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_signal_during_the_leftover_grace_is_ignored(serve, loop, signum):
    """2."""
    server = serve("tests.apps:basic", "--loop", loop, "--drain-timeout", "0.2",
                   "--cancel-grace", "0.1")
    _conn = await request_in_flight(server.port, "/stubborn")  # held open to the end
    server.signal()
    await asyncio.to_thread(server.wait_for, "loop.leftover_tasks")
    server.signal(signum)
    assert await asyncio.to_thread(server.wait) == 3
    names = server.names()
    late = names.index("loop.leftover_tasks") + 1
    assert names[late:] == ["stop.requested", "process.exit"] or names[late:] == [
        "stop.repeated", "process.exit"], names
