"""The handler's view of the stop (graceful.stopping): streams and long-polls end cleanly.

1. A server-sent-events stream (examples/sse.py) at SIGTERM sends its last event and ends
   with the terminating chunk; nothing is cancelled; the drain ends within 100 ms of the
   handler's return.
2. A long-poll (examples/longpoll.py) answers at once at SIGTERM, with Connection: close;
   the drain ends within 100 ms of its answer.
3. With --pre-stop-delay the stream goes on until the listeners close, so that a client
   reconnecting after it reaches another server.
4. Under web.run_app the example's stream ends at the app's on_shutdown (the factory asked
   for graceful.stopping(app)), well before run_app's shutdown timeout.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT
from tests.rawhttp import Connection


def _at(event: dict) -> float:
    return datetime.datetime.fromisoformat(event["timestamp"]).timestamp()


async def read_chunked(conn: Connection, timeout: float = 15.0) -> tuple[bytes, bool]:
    """The body of a chunked response, and whether it ended with the terminating chunk
    (False: the connection closed mid-body)."""
    body = b""
    try:
        while True:
            size_line = await asyncio.wait_for(conn.reader.readuntil(b"\r\n"), timeout)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                await asyncio.wait_for(conn.reader.readuntil(b"\r\n"), timeout)
                return body, True
            body += await asyncio.wait_for(conn.reader.readexactly(size + 2), timeout)
            body = body[:-2]
    except (asyncio.IncompleteReadError, ConnectionResetError, ValueError):
        return body, False


async def open_stream(port: int, path: str = "/events", headers: dict[str, str] | None = None
                      ) -> tuple[Connection, dict[str, str]]:
    conn = await Connection.open(port)
    conn.send("GET", path, headers=headers or {})
    head = (await asyncio.wait_for(conn.reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
    headers = {}
    for line in head.split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    assert head.startswith("HTTP/1.1 200"), head
    return conn, headers


async def first_event(conn: Connection) -> bytes:
    size = int(await asyncio.wait_for(conn.reader.readuntil(b"\r\n"), 5), 16)
    return (await conn.reader.readexactly(size + 2))[:-2]


async def test_sse_stream_ends_with_its_last_event_and_the_terminating_chunk(serve):
    """1."""
    server = serve("sse:create_app", "--app-dir", "examples", "--drain-timeout", "30")
    streams = [await open_stream(server.port) for _ in range(3)]
    for conn, headers in streams:
        assert headers["transfer-encoding"] == "chunked"
        assert (await first_event(conn)).startswith(b"id: ")
    server.signal(signal.SIGTERM)
    for conn, _ in streams:
        body, whole = await read_chunked(conn)
        assert whole, body
        assert body.endswith(b"event: bye\ndata: server stopping\nretry: 1000\n\n")
        assert await conn.at_eof(5)
    assert await asyncio.to_thread(server.wait) == 0
    names = server.names()
    assert "drain.deadline" not in names and names.count("sse.stream_ended") == 3
    ended = max(_at(e) for e in server.events if e["event"] == "sse.stream_ended")
    done = server.wait_for("drain.done")
    assert 0 <= _at(done) - ended < 0.1, (ended, done)


async def test_long_poll_answers_at_once(serve):
    """2."""
    server = serve("longpoll:create_app", "--app-dir", "examples", "--drain-timeout", "30")
    conn = (await server.hold("/poll?after=0")).conn
    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    response = await asyncio.wait_for(conn.read_response(), 5)
    answered_in = time.monotonic() - signalled
    assert response.status == 200 and response.closes
    assert json.loads(response.body) == {"messages": [], "next": 0, "stopping": True}
    assert answered_in < 1.0
    assert await asyncio.to_thread(server.wait) == 0
    assert "drain.deadline" not in server.names()
    answered = server.wait_for("longpoll.answered")
    done = server.wait_for("drain.done")
    assert 0 <= _at(done) - _at(answered) < 0.1, (answered, done)


async def test_stream_goes_on_through_the_pre_stop_delay(serve):
    """3."""
    server = serve("sse:create_app", "--app-dir", "examples", "--pre-stop-delay", "0.5")
    conn, _ = await open_stream(server.port)
    await first_event(conn)
    server.signal(signal.SIGTERM)
    body, whole = await read_chunked(conn)
    assert whole and body.endswith(b"retry: 1000\n\n")
    assert await asyncio.to_thread(server.wait) == 0
    closed = server.wait_for("listeners.closed")
    ended = server.wait_for("sse.stream_ended")
    assert _at(ended) >= _at(closed)
    assert body.count(b"data: tick") >= 3  # events went on after the signal (0.1 s apart)


RUN_APP = """
import sys
sys.path.insert(0, "examples")
from aiohttp import web
import sse
web.run_app(sse.create_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


async def test_under_run_app_the_stream_ends_at_on_shutdown(unused_tcp_port):
    """4. run_app's shutdown_timeout is 60 s: the stream ends long before, whole."""
    proc = subprocess.Popen([sys.executable, "-c", RUN_APP, str(unused_tcp_port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                conn, _ = await open_stream(unused_tcp_port)
                break
            except OSError:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
        await first_event(conn)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        body, whole = await read_chunked(conn)
        assert whole and body.endswith(b"retry: 1000\n\n")
        assert await asyncio.to_thread(proc.wait, 15) == 0
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
