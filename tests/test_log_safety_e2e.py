"""Logging can never stop a stop, a drain, a flush or a request, and never carries secrets.

1. The log pipe's reader goes away (`graceful serve ... 2>&1 | head -1`, a log shipper that
   dies): SIGTERM still drains and exits 0, SIGTERM again still forces (exit 3, checkpoint
   written), SIGINT still stops; the first dropped line is reported once on stdout.
2. With --access-log and a dead log pipe, keep-alive connections keep being served, not reset.
3. Secrets (an Authorization header, an API key in the query, a DSN, the state) go through
   every error path: a handler that raises, a malformed request (a \\x01 byte in a header),
   a shutdown hook that raises, a checkpoint that cannot be written, an on_startup that
   raises; in JSON and console formats, none reaches the log.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graceful.lifecycle.runtime import REPEAT_IGNORED_S
from graceful.testing import HOLD_HEADER
from tests.conftest import ROOT
from tests.rawhttp import Connection, get


class DeadPipeServer:
    """The CLI (with the plugin's marking middleware) with its log on a pipe the test reads
    until it cuts it: every later log write is EPIPE."""

    def __init__(self, stdout: Path, *args: str) -> None:
        self.stdout = stdout
        with stdout.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "graceful.testing.child", "serve", "tests.apps:basic",
                 "--port", "0", "--log-format", "json", *args],
                cwd=ROOT, stdout=out, stderr=subprocess.PIPE)
        self._log = b""
        self.port = json.loads(self._read_until(b'"server.started"'))["port"]

    def _read_until(self, marker: bytes, timeout: float = 15.0) -> bytes:
        """The first log line not read yet that holds `marker`. A selector, not select():
        the descriptor may be past 1024."""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                line, newline, rest = self._log.partition(b"\n")
                if newline:
                    self._log = rest
                    if marker in line:
                        return line
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    break
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                self._log += chunk
        raise AssertionError(f"no {marker.decode()} in the log; unread:\n{self._log.decode()}")

    async def hold(self, path: str) -> Connection:
        """A GET on a connection of its own, returned once its handler runs (the log says
        so: graceful/testing/marks.py)."""
        conn = await Connection.open(self.port)
        conn.send("GET", path, headers={HOLD_HEADER: "dead-pipe"})
        await asyncio.to_thread(self._read_until, b'"testing.request.entered"')
        return conn

    def cut_log(self) -> None:
        """The log's reader goes away."""
        assert self.proc.stderr is not None
        self.proc.stderr.close()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        return self.proc.wait(timeout)


@pytest.fixture
def dead_pipe(tmp_path: Path) -> Iterator[object]:
    started: list[DeadPipeServer] = []

    def start(*args: str) -> DeadPipeServer:
        started.append(DeadPipeServer(tmp_path / f"stdout-{len(started)}", *args))
        return started[-1]

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(10)


async def _until_status(port: int, path: str, status: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while (await get(port, path)).status != status:
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        await asyncio.sleep(0.02)


async def test_sigterm_then_sigterm_with_a_dead_log_pipe(dead_pipe, tmp_path):
    """1. The first SIGTERM starts the stop (readiness 503), the second forces: exit 3,
    the checkpoint written, the dropped log reported once on stdout."""
    path = tmp_path / "state.json"
    server = dead_pipe("--pre-stop-delay", "30", "--drain-timeout", "30",
                       "--checkpoint", str(path))
    _conn = await server.hold("/slow?s=30")  # held open to the end
    server.cut_log()
    server.signal()
    await _until_status(server.port, "/readyz", 503)
    await asyncio.sleep(REPEAT_IGNORED_S)  # a repeat sooner than this is ignored
    server.signal()
    assert await asyncio.to_thread(server.wait) == 3
    assert path.exists()
    notes = server.stdout.read_text().splitlines()
    assert len(notes) == 1 and "log" in notes[0] and "BrokenPipeError" in notes[0], notes


async def test_sigint_with_a_dead_log_pipe_drains_and_exits_0(dead_pipe):
    """1. SIGINT: the request in flight completes with Connection: close; exit 0."""
    server = dead_pipe("--drain-timeout", "10")
    conn = await server.hold("/slow?s=0.5")
    server.cut_log()
    server.signal(signal.SIGINT)
    response = await conn.read_response()
    assert response.status == 200 and response.closes
    assert await asyncio.to_thread(server.wait) == 0


async def test_access_log_to_a_dead_pipe_does_not_reset_keep_alive(dead_pipe):
    """2. Five requests on one keep-alive connection, each logged to the dead pipe."""
    server = dead_pipe("--access-log")
    server.cut_log()
    conn = await Connection.open(server.port)
    for _ in range(5):
        response = await conn.request("GET", "/fast")
        assert (response.status, response.closes) == (200, False)
    conn.close()
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0


SECRET = "s3cret"  # every secret the test sends holds it


def _port_from_log(server, timeout: float = 15.0) -> int:
    """The port of server.started, in either format."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(server.raw):
            if "server.started" in line:
                return int(re.search(r'"?port"?[=:] ?(\d+)', line).group(1))
        time.sleep(0.02)
    raise AssertionError("no server.started:\n" + "".join(server.raw))


@pytest.mark.parametrize(("log_format", "parser"), [("json", "C"), ("console", "C"),
                                                     ("json", "Python")])
async def test_secrets_never_reach_the_log(serve, tmp_path, log_format, parser):
    """3. Handler error, bad request, hook failure, checkpoint failure: exit 4 (the worst).
    aiohttp's pure-Python parser quotes the bad line in its errors too."""
    folder = tmp_path / "ck"
    folder.mkdir()
    server = serve("tests.apps:leaky", "--log-format", log_format, "--checkpoint",
                   str(folder / "state.json"), wait_started=False,
                   env={"AIOHTTP_NO_EXTENSIONS": "1"} if parser == "Python" else {})
    port = await asyncio.to_thread(_port_from_log, server)
    conn = await Connection.open(port)
    conn.send("GET", f"/upstream?api_key=qry-{SECRET}",
              headers={"Authorization": f"Bearer hdr-{SECRET}"})
    assert (await conn.read_response()).status == 500
    conn.close()
    bad = await Connection.open(port)
    bad.writer.write(f"GET /fast?api_key=qry-{SECRET} HTTP/1.1\r\nHost: t\r\n"
                     f"Authorization: Bearer hdr-{SECRET}\x01\r\n\r\n".encode())
    assert (await bad.read_response()).status == 400
    bad.close()
    shutil.rmtree(folder)  # the final flush fails
    server.signal()
    assert await asyncio.to_thread(server.wait) == 4
    log = "".join(server.raw)
    for path_was_taken in ("upstream refused", "Error handling request", "pool close failed",
                           "checkpoint.failed"):
        assert path_was_taken in log, path_was_taken
    assert SECRET not in log, [line for line in server.raw if SECRET in line]


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_secrets_in_a_failing_startup_never_reach_the_log(serve, log_format):
    """3. on_startup raises with a DSN in its locals: exit 1, named, no DSN."""
    server = serve("tests.apps:leaky_startup", "--log-format", log_format, wait_started=False)
    assert server.wait() == 1
    log = "".join(server.raw)
    assert "database unreachable" in log
    assert SECRET not in log, [line for line in server.raw if SECRET in line]
