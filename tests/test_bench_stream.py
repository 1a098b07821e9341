"""The stream scenario's classifier against tiny raw-socket servers: a whole stream, one
closed mid-body, one cut at the deadline.

1. The terminating chunk makes a stream clean (and a last "bye" event is seen).
2. A close without it before the deadline is truncated; at the deadline, cut_at_deadline.
"""

from __future__ import annotations

import asyncio

from bench import stream
from bench.stream import Stream, hold_stream, outcome

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _serve(body: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(HEAD + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _hold(body: bytes) -> Stream:
    server, port = await _serve(body)
    async with server:
        s = Stream()
        await hold_stream(port, s, asyncio.Event(), [0], 1)
    return s


async def test_whole_stream_is_clean():
    """1."""
    s = await _hold(chunk(b"data: tick 0\n\n") + chunk(b"event: bye\ndata: x\n\n") + b"0\r\n\r\n")
    assert s.clean and s.bye and s.events == 2
    assert outcome(s, s.start, None) == "clean"


async def test_close_without_the_terminating_chunk():
    """2."""
    s = await _hold(chunk(b"data: tick 0\n\n"))
    assert not s.clean and s.events == 1 and s.error
    assert outcome(s, s.start, None) == "truncated"
    assert outcome(s, s.end - stream.DRAIN_S, None) == "cut_at_deadline"
    assert outcome(s, s.start, s.end) == "killed"
