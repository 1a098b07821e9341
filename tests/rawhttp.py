"""A tiny HTTP/1.1 client on raw asyncio streams, so tests see exactly what the server did:
the headers it sent, a close, a reset."""

from __future__ import annotations

import asyncio
import dataclasses


@dataclasses.dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> None:
        lines = [f"{method} {path} HTTP/1.1", "Host: test"]
        if body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    async def read_response(self) -> Response:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return Response(int(status_line.split()[1]), headers, body)

    async def request(self, method: str, path: str, body: bytes = b"") -> Response:
        self.send(method, path, body)
        return await self.read_response()

    async def at_eof(self, timeout: float = 5.0) -> bool:
        """True when the server closed the connection (cleanly or not) without more data."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), timeout)
        except ConnectionResetError:
            return True
        return data == b""

    def close(self) -> None:
        self.writer.close()


async def get(port: int, path: str) -> Response:
    conn = await Connection.open(port)
    try:
        return await conn.request("GET", path)
    finally:
        conn.close()


HANDLER_REACH_S = 0.2  # ample for a local request to reach its handler


async def request_in_flight(port: int, path: str) -> Connection:
    """A GET sent on a connection of its own, given the time to reach its handler: the
    request in flight that a test then stops the server under."""
    conn = await Connection.open(port)
    conn.send("GET", path)
    await asyncio.sleep(HANDLER_REACH_S)
    return conn
