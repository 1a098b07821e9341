"""The bench's classifier against tiny raw-socket servers that misbehave on purpose:
a miscount of the load generator fails here, not in a benchmark table."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bench.client import EOF, REFUSED, Attempt, Conn, Outcome, Request, attempt, classify

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, set[str]], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def read_request(reader: asyncio.StreamReader, seen: set[str]) -> str:
    """Read one request (head and Content-Length body); the app 'sees' its x-req id."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
    seen.add(fields["x-req"])
    await reader.readexactly(int(fields.get("Content-Length", "0")))
    return fields["x-req"]


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER 0)."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[tuple[int, set[str]]]:
    seen: set[str] = set()
    writers: list[asyncio.StreamWriter] = []

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await handler(reader, writer, seen)

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        for writer in writers:
            writer.transport.abort()


GET = Request("/")


async def run(port: int, req: Request = GET, conn: Conn | None = None,
              timeout: float = 2.0, rid: str = "r1") -> tuple[Attempt, Conn | None]:
    a = Attempt(req_id=rid, reused=conn is not None, start=time.monotonic())
    return a, await attempt(port, conn, req, a, timeout)


async def test_1_ok_keeps_the_connection_for_the_next_request() -> None:
    async def handler(reader, writer, seen):  # type: ignore[no-untyped-def]
        for _ in range(2):
            await read_request(reader, seen)
            writer.write(OK)

    async with serve(handler) as (port, seen):
        first, conn = await run(port)
        second, conn = await run(port, conn=conn, rid="r2")
        assert conn is not None
        conn.close()
    assert [classify(a, seen) for a in (first, second)] == [Outcome.OK, Outcome.OK]
    assert (first.reused, second.reused) == (False, True)


async def test_2_refused_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: the kernel refuses
        a, conn = await run(port)
    assert (a.error, conn, classify(a, set())) == (REFUSED, None, Outcome.REFUSED)


async def test_3_idle_close_on_a_kept_alive_connection_is_a_race() -> None:
    """The server answers without Connection: close, then closes the idle connection
    without reading what the client writes next."""
    async def handler(reader, writer, seen):  # type: ignore[no-untyped-def]
        await read_request(reader, seen)
        writer.write(OK)
        await writer.drain()
        writer.close()

    async with serve(handler) as (port, seen):
        first, conn = await run(port)
        second, conn = await run(port, conn=conn, rid="r2")
    assert classify(first, seen) == Outcome.OK
    assert (second.got, conn) == (0, None)
    assert classify(second, seen) == Outcome.RACE


async def test_4_reset_after_reading_the_request_is_lost() -> None:
    async def handler(reader, writer, seen):  # type: ignore[no-untyped-def]
        await read_request(reader, seen)
        writer.write(OK)
        await read_request(reader, seen)  # the app saw the second request ...
        reset(writer)  # ... and the connection was reset instead of answered

    async with serve(handler) as (port, seen):
        _, conn = await run(port)
        second, _ = await run(port, conn=conn, rid="r2")
    assert "r2" in seen
    assert classify(second, seen) == Outcome.LOST


async def test_5_fresh_connection_dropped_unanswered_is_lost_not_a_race() -> None:
    async def handler(reader, writer, seen):  # type: ignore[no-untyped-def]
        reset(writer)  # accepted by the kernel, never served (a closed backlog)

    async with serve(handler) as (port, seen):
        a, _ = await run(port)
    assert classify(a, seen) == Outcome.LOST


async def test_6_503_is_5xx() -> None:
    async def handler(reader, writer, seen):  # type: ignore[no-untyped-def]
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async with serve(handler) as (port, seen):
        a, conn = await run(port)
    assert (classify(a, seen), a.status, a.conn_close, conn) == (Outcome.S5XX, 503, True, None)


async def test_7_hang_is_a_timeout() -> None:
    async def handler(reader, writer, seen):  # type: ignore[no-untyped-def]
        await read_request(reader, seen)
        await asyncio.sleep(30)

    async with serve(handler) as (port, seen):
        a, conn = await run(port, timeout=0.3)
    assert (classify(a, seen), conn) == (Outcome.TIMEOUT, None)


async def test_8_partial_response_is_lost() -> None:
    async def handler(reader, writer, seen):  # type: ignore[no-untyped-def]
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf")
        await writer.drain()
        writer.close()

    async with serve(handler) as (port, seen):
        a, _ = await run(port)
    assert a.error == EOF and a.got > 0
    assert classify(a, seen) == Outcome.LOST


async def test_9_upload_cut_midway_is_lost() -> None:
    async def handler(reader, writer, seen):  # type: ignore[no-untyped-def]
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        seen.add(head.split("x-req: ")[1].split("\r\n")[0])
        await reader.readexactly(1000)
        writer.close()

    async with serve(handler) as (port, seen):
        a, _ = await run(port, Request("/upload", 64_000, upload_s=0.4, chunks=8))
    assert a.got == 0 and a.error
    assert classify(a, seen) == Outcome.LOST


async def test_10_close_header_and_chunked_body() -> None:
    async def handler(reader, writer, seen):  # type: ignore[no-untyped-def]
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
                     b"\r\n2\r\nok\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    async with serve(handler) as (port, seen):
        a, conn = await run(port)
    assert (classify(a, seen), a.conn_close, conn) == (Outcome.OK, True, None)


@pytest.mark.parametrize(("facts", "seen", "expected"), [
    (dict(error=REFUSED), set(), Outcome.REFUSED),
    (dict(error="connect:99"), set(), Outcome.REFUSED),
    (dict(error=EOF, reused=True), set(), Outcome.RACE),
    (dict(error=EOF, reused=True), {"x"}, Outcome.LOST),
    (dict(error=EOF, reused=True), None, Outcome.RACE),
    (dict(error=EOF, reused=False), None, Outcome.LOST),
    (dict(error=EOF, reused=True, got=5), set(), Outcome.LOST),
    (dict(error="reset", reused=True), set(), Outcome.RACE),
    (dict(status=0), set(), Outcome.TIMEOUT),
    (dict(status=500), set(), Outcome.S5XX),
    (dict(status=404), set(), Outcome.OK),
])
def test_11_classification_table(facts: dict[str, object], seen: set[str] | None,
                                 expected: Outcome) -> None:
    a = Attempt(req_id="x", reused=False, start=0.0)
    for key, value in facts.items():
        setattr(a, key, value)
    assert classify(a, seen) == expected


@pytest.mark.skipif(importlib.util.find_spec("graceful.cli.main") is None,
                    reason="graceful's CLI (graceful/cli/main.py) is not importable yet")
async def test_12_smoke_drain_run_against_graceful(tmp_path: Path) -> None:
    """A few seconds of the real harness: 10 connections, 100 ms handlers, SIGTERM."""
    from bench.drain import RunSpec, run_one
    from bench.scenarios import build
    from bench.servers import SERVERS

    spec = RunSpec(SERVERS["graceful"], build("short", 100), 10, "TERM", 0)
    r = await run_one(spec, tmp_path)
    assert r["exit_code"] == 0 and not r["killed"]
    assert r["counts"]["ok"] > 10 and r["seen_by_app"] >= r["counts"]["ok"]
    assert sum(r["counts"].values()) == r["attempts"]
    assert r["in_flight_at_signal"] == 10
    # Every response the server wrote once it knew of the stop says Connection: close; a
    # request written between the signal and then (the supervisor forwarding the stop to
    # its worker, slow on a loaded machine) may rightly have been answered keep-alive.
    assert r["stop_known_s"] is not None and r["stop_known_s"] >= 0
    assert r["keep_alive_after_stop"] == 0
    assert 0 < r["drain_conn_close"] <= r["drain_responses"]
    assert (r["lost"], r["race"]) == (0, 0)
