"""Surroundings production has and a terminal does not: the exit code tells the truth.

1. stdout closed (`>&-`), stdin too: a clean stop exits 0 on asyncio and on uvloop (a closed
   descriptor used to be reused by the loop: libuv aborted with 134, asyncio exited 1).
2. One more signal in the last half second, while a handler that swallows its cancellation
   gets its leftover grace (after the runtime has finished): logged and ignored, exit 3 (it
   used to be 1, "Aborted!", for SIGINT and -15 for SIGTERM).
3. A port already in use, a host that does not resolve: exit 2 with one line naming the
   address, before the app's factory or on_startup runs (it was exit 1 after on_startup).
4. `--host ""` listens on every interface, IPv4 and IPv6, as run_app does.
5. `graceful.run(app)` twice with one Application: the second says why it cannot (aiohttp
   ties an Application to one loop), not "already routes /livez"; with a factory it runs.
6. `Runtime.stop()` before `start()` is kept, like a signal before the loop: the start is
   abandoned and the exit is clean.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import pytest

import graceful
from tests import apps
from tests.conftest import ROOT, ServerProcess
from tests.rawhttp import get


def _serve_in_shell(redirects: str, *args: str) -> ServerProcess:
    """The CLI exec'd by sh with `redirects` applied (its pid is the server's)."""
    command = (f'exec "{sys.executable}" -m graceful serve "$@" --host 127.0.0.1 --port 0 '
               f"--log-format json {redirects}")
    proc = subprocess.Popen(["sh", "-c", command, "sh", *args], cwd=ROOT, env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return ServerProcess.following(proc)


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
    assert server.names()[-2:] == ["process.exit", "supervisor.exit"]  # worker, then service


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_signal_during_the_leftover_grace_is_ignored(serve, loop, signum):
    """2."""
    server = serve("tests.apps:basic", "--loop", loop, "--drain-timeout", "0.2",
                   "--cancel-grace", "0.1")
    _conn = (await server.hold("/stubborn")).conn  # held open to the end
    server.signal()
    await asyncio.to_thread(server.wait_for, "loop.leftover_tasks")
    server.signal(signum)
    assert await asyncio.to_thread(server.wait) == 3
    names = [name for name in server.names() if not name.startswith("supervisor.")]  # worker's
    late = names.index("loop.leftover_tasks") + 1
    assert names[late:] == ["stop.requested", "process.exit"] or names[late:] == [
        "stop.repeated", "process.exit"], names


def _serve_and_fail(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "graceful", "serve", "tests.apps:traced_startup",
                           "--log-format", "json", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30,
                          env={**os.environ, "TRACE_FILE": str(tmp_path / "trace")})


def test_port_in_use_exits_2_before_the_app_starts(tmp_path):
    """3."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _serve_and_fail(tmp_path, "--host", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "trace").exists()  # neither the factory nor on_startup ran


def test_unresolvable_host_exits_2_before_the_app_starts(tmp_path):
    """3."""
    result = _serve_and_fail(tmp_path, "--host", "no-such-host.invalid", "--port", "0")
    assert result.returncode == 2, result.stderr
    assert "no-such-host.invalid" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "trace").exists()


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


async def test_empty_host_listens_on_every_interface(serve):
    """4."""
    server = serve("tests.apps:basic", "--host", "")
    assert (await get(server.port, "/fast")).status == 200
    if _ipv6_available():
        reader, writer = await asyncio.open_connection("::1", server.port)
        writer.write(b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0


RUN_TWICE = """
import os, signal, sys
import graceful
from tests import apps

class StopWhenReady(graceful.StopObserver):
    def ready(self):
        os.kill(os.getpid(), signal.SIGTERM)

source = apps.basic() if sys.argv[1] == "app" else apps.basic
for _ in range(2):
    try:
        print(int(graceful.run(source, port=0, log_format="json", observers=[StopWhenReady()])))
    except graceful.GracefulError as err:
        print(int(err.exit_code), err)
"""


@pytest.mark.parametrize("source", ["app", "factory"])
def test_run_twice(source):
    """5."""
    result = subprocess.run([sys.executable, "-c", RUN_TWICE, source], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    first, second = result.stdout.splitlines()
    assert first == "0"
    if source == "factory":
        assert second == "0"
    else:
        assert second.startswith("2 ") and "factory" in second, second
        assert "already routes" not in second


async def test_stop_before_start_abandons_the_start():
    """6."""
    built: list[object] = []

    def factory():
        built.append(1)
        return apps.basic()

    runtime = graceful.Runtime(factory, graceful.Config(port=0))
    runtime.stop("before start")
    await runtime.start()
    assert await runtime.wait_stopped() == graceful.ExitCode.OK
    assert built == [] and runtime.phase is graceful.Phase.STOPPED
