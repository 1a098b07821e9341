"""Where it listens: --bind (HOST:PORT, [V6]:PORT, unix:PATH, repeatable), --fd N."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, ServerProcess
from tests.rawhttp import Connection

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
                conn.send("GET", "/traced?s=1")
            await asyncio.to_thread(server.wait_for, "app.handler_started", n=len(conns))
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


@pytest.mark.parametrize("kind", ["unix", "tls"])
def test_accept_queue_served_on_unix_and_tls_listeners(tmp_path, kind):
    """7. Connections the kernel completed but the loop never accepted are answered at the
    listener's close, on a Unix socket and over TLS as on plain TCP (test_drain_e2e 4)."""
    from aiohttp import web

    from graceful.http.binding import bind_unix
    from graceful.http.listeners import Listener, bind

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    request = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"

    async def scenario() -> list[bytes]:
        server = web.Server(hello)
        runner = web.ServerRunner(server)
        await runner.setup()
        server_tls = client_tls = None
        if kind == "tls":
            import ssl

            import trustme

            authority = trustme.CA()
            server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            authority.issue_cert("127.0.0.1").configure_cert(server_tls)
            client_tls = ssl.create_default_context()
            authority.configure_trust(client_tls)
        if kind == "unix":
            sock = bind_unix(str(tmp_path / "q.sock"), None)
            sock.listen(64)
        else:
            sock = bind("127.0.0.1", 0, 64)
        listener = Listener(sock, server, ssl=server_tls)
        await listener.start(64)
        clients = []
        if kind == "tls":  # first in the queue: a client that never starts its handshake
            silent = socket.create_connection(listener.address)
        for _ in range(4):  # no await: the loop never accepts them
            if kind == "unix":
                client = socket.socket(socket.AF_UNIX)
                client.connect(str(tmp_path / "q.sock"))
                client.sendall(request)
            else:
                client = socket.create_connection(listener.address)
            clients.append(client)
        started = time.monotonic()

        def answer(client: socket.socket) -> tuple[bytes, float]:
            client.settimeout(10)
            if client_tls is not None:  # the handshake completes once the close accepts it
                client = client_tls.wrap_socket(client, server_hostname="127.0.0.1")
                client.sendall(request)
            data = b""
            while chunk := client.recv(4096):
                data += chunk
            client.close()
            return data, time.monotonic() - started

        with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
            # started at once, not through the loop: nothing lets it accept before close()
            answering = [asyncio.wrap_future(pool.submit(answer, c)) for c in clients]
            assert await listener.close() == (5 if kind == "tls" else 4)
            answers = await asyncio.gather(*answering)
        if kind == "tls":
            silent.close()
        await runner.cleanup()
        return answers

    answers = asyncio.run(scenario())
    assert all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"hello") for a, _ in answers)
    # TLS: the silent client does not hold the others' handshakes (it gets 5 s, alone)
    assert max(took for _, took in answers) < 3, answers


def test_reuse_port_lets_two_processes_share_a_port(tmp_path):
    """--reuse-port (run_app's reuse_port): a second process listens on the
    same port and both stop cleanly; without it the second is refused (exit 2)."""
    from tests.conftest import ServerProcess

    def serve(*extra: str) -> ServerProcess:
        proc = subprocess.Popen(
            [sys.executable, "-m", "graceful", "serve", "tests.apps:basic", "--host",
             "127.0.0.1", "--log-format", "json", *extra],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        server = ServerProcess.__new__(ServerProcess)
        ServerProcess._attach(server, proc)
        return server

    first = serve("--port", "0", "--reuse-port")
    servers = [first]
    try:
        port = first.wait_for("server.started")["port"]
        second = serve("--port", str(port), "--reuse-port")
        servers.append(second)
        assert second.wait_for("server.started")["port"] == port
        refused = serve("--port", str(port))
        servers.append(refused)
        assert refused.proc.wait(timeout=30) == 2
        for server in (first, second):
            server.proc.send_signal(signal.SIGTERM)
            assert server.proc.wait(timeout=30) == 0
    finally:
        for server in servers:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
