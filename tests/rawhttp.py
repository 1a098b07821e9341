"""The raw HTTP/1.1 client of graceful's pytest plugin (graceful/testing/http.py), and the one
way this suite knows the server has read what a client sent when no log line says so."""

from __future__ import annotations

from graceful.testing.http import Connection, IncompleteResponse, Response, get

__all__ = ["Connection", "IncompleteResponse", "Response", "caught_up", "get"]


async def caught_up(port: int, host: str = "127.0.0.1") -> None:
    """Return once the server has read all that reached its sockets before this call: a
    half-sent request, a client's close. An event loop reads every ready socket in one
    turn, and a request on a new connection is answered turns later (accept, read, handle),
    so its answer comes after. Send with `await writer.drain()` (close with
    `wait_closed()`) first: what is still in this process's buffers has not reached them.
    A request the server should be *running* is waited for with `server.hold(path)`."""
    response = await get(port, "/livez", host)
    assert response.status == 200, response
