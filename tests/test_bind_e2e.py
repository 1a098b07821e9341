"""Where it listens: --bind (HOST:PORT, [V6]:PORT, unix:PATH, repeatable), --fd N."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, ServerProcess
from tests.rawhttp import HANDLER_REACH_S, Connection

CONSOLE_SCRIPT = Path(sys.executable).with_name("graceful")


def start(*args: str, pass_fds: tuple[int, ...] = (), cwd: Path = ROOT) -> ServerProcess:
    """The console script with exactly `args` (no --host/--port added)."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith("GRACEFUL_")}
    proc = subprocess.Popen([str(CONSOLE_SCRIPT), "serve", *args, "--log-format", "json"],
                            cwd=cwd, env=env, pass_fds=pass_fds, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    server = ServerProcess.__new__(ServerProcess)
    ServerProcess._attach(server, proc)
    return server


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith("GRACEFUL_")}
    return subprocess.run([str(CONSOLE_SCRIPT), "serve", *args, "--log-format", "json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


def error_lines(stderr: str) -> list[str]:
    """What the run said was wrong: click's one line, or the log's error events (JSON)."""
    errors = []
    for line in stderr.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            errors.append(line)
            continue
        if event.get("level") == "error":
            errors.append(event.get("error", line))
    assert "Traceback" not in stderr
    return errors


async def _open(address: str) -> Connection:
    if address.startswith("unix:"):
        return Connection(*await asyncio.open_unix_connection(address[5:]))
    host, _, port = address.rpartition(":")
    return Connection(*await asyncio.open_connection(host.strip("[]"), int(port)))


def _ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_every_address_served_and_drained_together(tmp_path):
    """1. IPv4, IPv6 and a Unix socket (mode 600) at once: server.started lists all three;
    a slow request in flight on each at SIGTERM completes with Connection: close, then
    every listener refuses; the socket file is removed; exit 0."""
    if not _ipv6():
        pytest.skip("no IPv6 loopback")
    path = tmp_path / "app.sock"
    server = start("tests.apps:basic", "--bind", "127.0.0.1:0", "--bind", "[::1]:0",
                   "--bind", f"unix:{path}", "--unix-socket-mode", "600")
    try:
        addresses = server.wait_for("server.started")["addresses"]
        assert len(addresses) == 3 and addresses[1].startswith("[::1]:")
        assert addresses[2] == f"unix:{path}"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

        async def scenario() -> None:
            conns = [await _open(a) for a in addresses]
            for conn in conns:
                conn.send("GET", "/slow?s=1")
            await asyncio.sleep(HANDLER_REACH_S)
            server.signal(signal.SIGTERM)
            for conn in conns:
                response = await conn.read_response()
                assert response.status == 200 and response.closes
                conn.close()
            server.wait_for("listeners.closed")
            for address in addresses:
                with pytest.raises(OSError):
                    await _open(address)

        asyncio.run(scenario())
        assert server.wait(15) == 0
        assert not path.exists()
    finally:
        server.kill()


def test_stale_unix_socket_replaced_live_one_refused(tmp_path):
    """2. A socket file left by a killed process is replaced; one a live server holds is
    refused with one line naming it (exit 2), and the live server keeps serving."""
    path = tmp_path / "app.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what kill -9 leaves
    server = start("tests.apps:basic", "--bind", f"unix:{path}")
    try:
        server.wait_for("server.started")
        second = run("tests.apps:basic", "--bind", f"unix:{path}")
        assert second.returncode == 2
        lines = error_lines(second.stderr)
        assert len(lines) == 1 and str(path) in lines[0], second.stderr

        async def still_serving() -> None:
            conn = await _open(f"unix:{path}")
            assert (await conn.request("GET", "/fast")).status == 200
            conn.close()

        asyncio.run(still_serving())
        server.signal(signal.SIGTERM)
        assert server.wait(15) == 0
    finally:
        server.kill()


def test_fd_serves_a_socket_the_parent_opened():
    """3. --fd N: the parent binds and listens, graceful serves that very socket."""
    parent = socket.socket()
    parent.bind(("127.0.0.1", 0))
    parent.listen(16)
    port = parent.getsockname()[1]
    server = start("tests.apps:basic", "--fd", str(parent.fileno()),
                   pass_fds=(parent.fileno(),))
    parent.close()
    try:
        assert server.wait_for("server.started")["addresses"] == [f"127.0.0.1:{port}"]

        async def get() -> None:
            conn = await _open(f"127.0.0.1:{port}")
            assert (await conn.request("GET", "/fast")).status == 200
            conn.close()

        asyncio.run(get())
        server.signal(signal.SIGTERM)
        assert server.wait(15) == 0
    finally:
        server.kill()


@pytest.mark.parametrize(("args", "word"), [
    (["--bind", "localhost"], "localhost"),
    (["--bind", "127.0.0.1:99999"], "99999"),
    (["--bind", "[::1:80"], "[::1:80"),
    (["--bind", "unix:"], "unix:"),
    (["--bind", "unix:/nonexistent-dir/app.sock"], "/nonexistent-dir/app.sock"),
    (["--fd", "250"], "250"),
    (["--unix-socket-mode", "999"], "999"),
])
def test_bad_addresses_exit_2_in_one_line(args, word):
    """4. A malformed --bind, a folder that does not exist, a closed --fd, a bad mode: exit 2,
    one line naming the value."""
    result = run("tests.apps:basic", *args)
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and word in lines[0], result.stderr


def test_port_in_use_names_the_address():
    """5. A --bind whose port is taken: exit 2, one line naming the address."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        result = run("tests.apps:basic", "--bind", "127.0.0.1:0", "--bind", f"127.0.0.1:{port}")
        assert result.returncode == 2
        lines = error_lines(result.stderr)
        assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0], result.stderr
    finally:
        taken.close()


@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv")
def test_privileged_port_without_rights_names_port_and_reason():
    """6. Port 80 without the right to bind it (CAP_NET_BIND_SERVICE dropped): exit 2, one
    line naming the address and the reason."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith("GRACEFUL_")}
    result = subprocess.run(["setpriv", "--bounding-set=-net_bind_service", "--",
                             str(CONSOLE_SCRIPT), "serve", "tests.apps:basic", "--bind",
                             "127.0.0.1:80"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "127.0.0.1:80" in lines[0], result.stderr
    assert "privileged" in lines[0].lower(), result.stderr
