"""A tiny HTTP/1.1 client on raw asyncio streams, so a test sees exactly what the server
did: the headers it sent, a body cut short, a close, a reset."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

# A request carrying this header is logged by the served app's innermost middleware
# (`testing.request.entered`, with the header's value) just before its handler runs: the
# plugin's `hold()` waits for that line instead of sleeping (graceful/testing/marks.py).
HOLD_HEADER = "X-Graceful-Hold"


class IncompleteResponse(AssertionError):
    """The server closed or reset the connection before the response was whole."""


@dataclasses.dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    received_at: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def closes(self) -> bool:
        """The server said `Connection: close`."""
        return self.headers.get("connection", "").lower() == "close"

    def text(self) -> str:
        return self.body.decode()


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    def send(self, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> None:
        """Write one request. A Content-Length in `headers` is sent as given, so a body can
        be sent in part (an upload in progress: `conn.writer.write` the rest later)."""
        headers = headers or {}
        lines = [f"{method} {path} HTTP/1.1", "Host: test"]
        given = any(name.lower() == "content-length" for name in headers)
        if not given and (body or method in ("POST", "PUT", "PATCH")):
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def read_response(self) -> Response:
        """The next whole response: Content-Length, chunked, or up to the close. Raises
        IncompleteResponse when the connection ends first."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in header_lines:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                body = await self._read_chunked()
            elif "content-length" in headers:
                body = await self.reader.readexactly(int(headers["content-length"]))
            elif headers.get("connection", "").lower() == "close":
                body = await self.reader.read()
            else:
                body = b""
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            raise IncompleteResponse(f"the connection ended inside a response: {err!r}") from err
        return Response(int(status_line.split()[1]), headers, body)

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")  # no trailers sent by aiohttp
                return bytes(body)
            body += await self.reader.readexactly(size)
            await self.reader.readexactly(2)

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> Response:
        self.send(method, path, body, headers)
        return await self.read_response()

    async def at_eof(self, timeout: float = 5.0) -> bool:
        """True when the server closed the connection (cleanly or not) without more data."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), timeout)
        except ConnectionResetError:
            return True
        return data == b""

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # the test's loop is closed already
            self.writer.close()


async def get(port: int, path: str, host: str = "127.0.0.1") -> Response:
    conn = await Connection.open(port, host)
    try:
        return await conn.request("GET", path)
    finally:
        conn.close()


@dataclasses.dataclass
class Held:
    """A request known to be inside its handler (see `GracefulServer.hold`)."""

    method: str
    path: str
    conn: Connection
    mark: str
    entered: dict[str, object]  # the testing.request.entered event
    _response: asyncio.Task[Response] | None = None

    async def response(self, timeout: float = 60.0) -> Response:
        """The whole response (read once, then kept). IncompleteResponse if it was cut."""
        if self._response is None:
            self._response = asyncio.ensure_future(self.conn.read_response())
        return await asyncio.wait_for(asyncio.shield(self._response), timeout)

    def answered(self) -> Response | None:
        """The response, if `response()` has read it whole."""
        task = self._response
        if task is None or not task.done() or task.cancelled() or task.exception():
            return None
        return task.result()

    def __str__(self) -> str:
        return f"{self.method} {self.path}"
