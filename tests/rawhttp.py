"""The raw HTTP/1.1 client of graceful's pytest plugin (graceful/testing/http.py), and the
suite's older way to put a request in flight."""

from __future__ import annotations

import asyncio

from graceful.testing.http import Connection, IncompleteResponse, Response, get

__all__ = ["HANDLER_REACH_S", "Connection", "IncompleteResponse", "Response", "get",
           "request_in_flight"]

HANDLER_REACH_S = 0.2  # ample for a local request to reach its handler


async def request_in_flight(port: int, path: str) -> Connection:
    """A GET sent on a connection of its own, given the time to reach its handler: the
    request in flight that a test then stops the server under. New tests use the plugin's
    `server.hold(path)`, which waits for the handler instead."""
    conn = await Connection.open(port)
    conn.send("GET", path)
    await asyncio.sleep(HANDLER_REACH_S)
    return conn
