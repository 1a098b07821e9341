"""One HTTP/1.1 request attempt on raw asyncio streams, and its exact classification.

The client records only facts (was the connection reused, how many response bytes came,
how the connection ended); :func:`classify` turns facts into an outcome, once the run is
over and the harness knows which request ids the application saw (``bench.apps``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import time


class Outcome(enum.StrEnum):
    OK = "ok"
    REFUSED = "refused"  # connect refused: no request written (acceptable after the stop)
    RACE = "keepalive_race"  # written on a kept-alive connection, closed unanswered and unseen
    LOST = "lost"  # the server took the request and never answered it fully, or reset it
    S5XX = "5xx"
    TIMEOUT = "timeout"


OUTCOMES = tuple(Outcome)

# Facts about how an attempt ended (Attempt.error).
REFUSED, EOF, RESET, TIMEOUT = "refused", "eof", "reset", "timeout"


@dataclasses.dataclass(slots=True)
class Attempt:
    req_id: str
    reused: bool  # written on a connection that had already carried a response
    start: float  # monotonic seconds, before connect (fresh) or before writing (reused)
    end: float = 0.0
    status: int = 0
    got: int = 0  # response bytes received
    error: str = ""  # "" (a whole response), REFUSED, EOF, RESET, TIMEOUT, "connect:<errno>"
    conn_close: bool = False  # the response said Connection: close
    outcome: str = ""


def classify(a: Attempt, seen: set[str] | None) -> Outcome:
    """The outcome of one attempt. ``seen``: ids whose handler started (None: unknown).

    A connection closed with no response byte is a keep-alive race only when the request
    went out on a reused connection and the application never saw it: the server closed an
    idle connection as the request arrived. A fresh connection has no such excuse: the
    kernel accepted it, the request was written, and it was dropped (lost).
    """
    if a.error == REFUSED or a.error.startswith("connect:"):
        return Outcome.REFUSED
    if a.error == TIMEOUT:
        return Outcome.TIMEOUT
    if not a.error:
        if a.status == 0:  # never finished
            return Outcome.TIMEOUT
        return Outcome.S5XX if a.status >= 500 else Outcome.OK
    if a.got or not a.reused:
        return Outcome.LOST
    app_saw = seen is not None and a.req_id in seen
    return Outcome.LOST if app_saw else Outcome.RACE


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    path: str
    upload_bytes: int = 0  # POST body size; 0 means GET
    upload_s: float = 0.0  # time over which the body is trickled
    chunks: int = 16  # the first at once, the last upload_s later
    close: bool = False  # send Connection: close (a new connection per request)

    @property
    def nominal_s(self) -> float:
        """Lower bound of the time the server needs (upload time; the handler adds to it)."""
        return self.upload_s


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.used = reader, writer, False

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


async def attempt(port: int, conn: Conn | None, req: Request, a: Attempt,
                  timeout: float) -> Conn | None:
    """Run one attempt into ``a``; return the connection if it may carry the next one."""
    try:
        async with asyncio.timeout(timeout):
            if conn is None:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except ConnectionRefusedError:
                    a.error = REFUSED
                    return None
                except OSError as exc:
                    a.error = f"connect:{exc.errno}"
                    return None
                conn = Conn(reader, writer)
            a.reused = conn.used
            await _send(conn, req, a)
            keep = await _read_response(conn.reader, a)
    except TimeoutError:
        a.error = TIMEOUT
        keep = False
    except (ConnectionResetError, BrokenPipeError):
        a.error = RESET
        keep = False
    except asyncio.CancelledError:  # the harness gave up on it: it never finished
        a.error = TIMEOUT
        if conn is not None:
            conn.close()
        raise
    finally:
        a.end = time.monotonic()
    if conn is not None and not keep:
        conn.close()
        return None
    if conn is not None:
        conn.used = True
    return conn


async def _send(conn: Conn, req: Request, a: Attempt) -> None:
    method = "POST" if req.upload_bytes else "GET"
    head = f"{method} {req.path} HTTP/1.1\r\nHost: bench\r\nx-req: {a.req_id}\r\n"
    if req.upload_bytes:
        head += f"Content-Length: {req.upload_bytes}\r\n"
    if req.close:
        head += "Connection: close\r\n"
    conn.writer.write((head + "\r\n").encode())
    if not req.upload_bytes:
        return
    size = -(-req.upload_bytes // req.chunks)
    left = req.upload_bytes
    for _ in range(req.chunks):
        # Stop writing once the server closed: the response (if any) is read below.
        if _peer_closed(conn.reader) or conn.writer.is_closing():
            return
        chunk = min(size, left)
        try:
            conn.writer.write(b"x" * chunk)
            await conn.writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            return
        left -= chunk
        if left <= 0:
            return
        await asyncio.sleep(req.upload_s / max(req.chunks - 1, 1))


def _peer_closed(reader: asyncio.StreamReader) -> bool:
    # at_eof() is False while a response sits unread in the buffer; the EOF flag is what
    # tells that the server closed (StreamReader has no public accessor for it).
    return bool(getattr(reader, "_eof", False))


async def _read_response(reader: asyncio.StreamReader, a: Attempt) -> bool:
    """Read one response into ``a``; True when the connection stays open."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        a.got, a.error = len(exc.partial), EOF
        return False
    a.got = len(head)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip().lower()
    try:
        if headers.get("transfer-encoding") == "chunked":
            a.got += await _read_chunked(reader)
        else:
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            a.got += len(body)
    except asyncio.IncompleteReadError as exc:
        a.got += len(exc.partial)
        a.error = EOF
        return False
    a.status = int(status_line.split()[1])
    a.conn_close = headers.get("connection") == "close"
    return not a.conn_close and status_line.startswith("HTTP/1.1")


async def _read_chunked(reader: asyncio.StreamReader) -> int:
    total = 0
    for _ in range(1_000_000):
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        total += len(size_line)
        data = await reader.readexactly(size + 2)
        total += len(data)
        if size == 0:
            return total
    raise ValueError("too many chunks")
