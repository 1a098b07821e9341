"""A client cannot write lines of its own into the log, nor drive the operator's terminal.

Whatever a request carries (its path, its query, its headers) reaches the log only as
escaped text: a line feed shows as `\\n`, an escape character as `\\x1b`.

1. The console access log: a path whose decoded form holds a line feed and a fake log line
   stays one line, and terminal escape sequences are written escaped.
2. The app's own log lines (structlog and the standard library's logging) carrying what the
   client sent are escaped too, in console output: the renderer escapes every value; a
   traceback is indented and escaped, its exception's message quoting the client's query.
3. JSON lines stay one JSON object each, and keep the value exactly as the client sent it.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT
from tests.rawhttp import Connection

FORGED = "2000-01-01T00:00:00Z [info     ] process.exit code=0 forged=yes"
FORGING_PATH = "/x%0a" + FORGED.replace(" ", "%20").replace("[", "%5B").replace("]", "%5D")
ANSI_PATH = "/%1b[2J%1b[31mred"


def console_server(target: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "graceful", "serve", target, "--host", "127.0.0.1",
         "--port", "0", "--log-format", "console", *args],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if "server.started" in line:
            return proc, int(re.search(r"port=(\d+)", line).group(1))  # type: ignore[union-attr]
        if not line:
            break
    proc.kill()
    proc.wait()
    raise AssertionError("the server did not start")


async def send(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    conn = await Connection.open(port)
    try:
        conn.send("GET", path, headers={**(headers or {}), "Connection": "close"})
        return (await conn.read_response()).status
    finally:
        conn.close()


def stop(proc: subprocess.Popen[str]) -> str:
    try:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, rest
    return rest


def assert_no_forgery(text: str) -> None:
    lines = text.split("\n")  # not splitlines(): it also splits at U+2028, as some viewers do
    assert not any(line.startswith("2000-01-01") for line in lines), text
    assert all(c.isprintable() for c in text.replace("\n", "")), repr(text)


def test_console_access_log_cannot_be_forged():
    """1."""
    proc, port = console_server("tests.apps:basic", "--access-log")
    assert asyncio.run(send(port, FORGING_PATH)) == 404
    assert asyncio.run(send(port, ANSI_PATH)) == 404
    rest = stop(proc)
    assert_no_forgery(rest)
    access = [line for line in rest.splitlines() if '"GET /' in line]
    assert len(access) == 2, rest
    assert "/x\\n2000-01-01T00:00:00Z" in access[0] and '404' in access[0], access
    assert "/\\x1b[2J\\x1b[31mred" in access[1], access


def test_console_app_lines_are_escaped():
    """2."""
    proc, port = console_server("tests.apps:logs_what_it_is_sent")
    query = "/search?q=shoes%0a" + FORGED.replace(" ", "%20") + "%1b[2J"
    assert asyncio.run(send(port, query, {"User-Agent": "curl\u2028fake\tline"})) == 200
    assert asyncio.run(send(port, query.replace("search?q", "item?name"))) == 500
    rest = stop(proc)
    assert_no_forgery(rest)
    found = [line for line in rest.splitlines() if "app.search" in line]
    assert len(found) == 1 and "shoes\\n2000-01-01" in found[0], rest
    assert "agent='curl\\u2028fake\\tline'" in found[0], rest
    stdlib = [line for line in rest.splitlines() if "searched for" in line]
    assert len(stdlib) == 1 and "shoes\\n2000" in stdlib[0], rest
    cause = [line for line in rest.split("\n") if line.lstrip().startswith("LookupError")]
    assert cause == ["    LookupError: no item called shoes"], rest
    assert f"    {FORGED}\\x1b[2J" in rest.split("\n"), rest


async def test_json_lines_stay_json(serve):
    """3."""
    server = serve("tests.apps:logs_what_it_is_sent", "--access-log")
    assert await send(server.port, FORGING_PATH) == 404
    assert await send(server.port, "/search?q=a%0ab%1bc", {"User-Agent": "ua\u2028x"}) == 200
    server.wait_for("app.search")
    server.stop()
    assert await server.exited() == 0
    for line in server.raw:
        assert line.endswith("\n") and "\n" not in line[:-1]
        assert line[:-1].isascii() and line[:-1].isprintable(), repr(line)
        json.loads(line)
    paths = [e["path"] for e in server.events if e["event"] == "http.access"]
    assert "/x\n" + FORGED in paths
    search = server.wait_for("app.search")
    assert search["q"] == "a\nb\x1bc" and search["agent"] == "ua\u2028x"
