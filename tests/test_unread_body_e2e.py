"""Uploads answered before their body was read: the drain is not held by the rest of it.

1. A request refused before its body is read (a sub-app's auth middleware: 401), whose body
   goes on arriving after the answer, on a keep-alive connection: the stop closes that
   connection as idle once the body has come, and the drain ends at once (not at
   --drain-timeout); exit 0.
2. The same for a body past client_max_size (413), the rest sent after the answer.
3. graceful's connection handler calls aiohttp's RequestHandler.data_received and
   log_access through the class: a patch applied after graceful was imported is honoured.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

import graceful
import graceful.http.protocol  # loaded before the patch, as in a server that runs
from tests.rawhttp import Connection, caught_up

BODY = 256 * 1024


@pytest.mark.parametrize(("path", "status"), [("/api/body", 401), ("/body", 413)])
async def test_answer_before_the_body_does_not_hold_the_drain(serve, path, status):
    """1, 2."""
    server = serve("tests.apps:with_guarded_uploads", "--drain-timeout", "10")
    conn = await Connection.open(server.port)
    first = 96 * 1024  # past client_max_size (64 KiB): /body answers 413 without the rest
    conn.send("POST", path, b"x" * first, headers={"Content-Length": str(BODY)})
    await conn.writer.drain()
    answer = await conn.read_response()
    assert answer.status == status and not answer.closes, answer
    conn.writer.write(b"x" * (BODY - first))  # the rest of the body, after the answer
    await conn.writer.drain()
    await caught_up(server.port)
    started = time.monotonic()
    server.signal()
    assert await conn.at_eof(5)
    assert await asyncio.to_thread(server.wait) == 0
    assert time.monotonic() - started < 2
    assert "drain.deadline" not in server.names()
    assert server.wait_for("drain.done")["took_s"] < 1


async def test_aiohttp_methods_are_called_through_the_class(monkeypatch):
    """3."""
    calls: list[str] = []
    data_received, log_access = RequestHandler.data_received, RequestHandler.log_access

    def counting_data_received(self: RequestHandler, data: bytes) -> None:
        calls.append("data_received")
        data_received(self, data)

    def counting_log_access(self: RequestHandler, *args: object) -> None:
        calls.append("log_access")
        log_access(self, *args)

    monkeypatch.setattr(RequestHandler, "data_received", counting_data_received)
    monkeypatch.setattr(RequestHandler, "log_access", counting_log_access)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    async with graceful.Runtime(app, graceful.Config(port=0, access_log=True)) as runtime, \
            aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{runtime.port}/") as response:
        assert await response.text() == "hello"
    assert calls[:2] == ["data_received", "log_access"]
