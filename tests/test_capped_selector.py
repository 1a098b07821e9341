"""The selector loop of a Windows worker (graceful/host/capped_selector.py), run on Linux with
a small cap: the logic is the platform's selector loop's, the cap is ours.

1. With more clients than the cap, the loop serves up to the cap and the others wait in
   the accept queue (not reset, not refused); each connection that closes lets a waiting
   one in, and every client is answered in the end.
2. A server closed while the loop waits at the cap stops accepting for good.
3. At a stop, graceful's listener takes from the accept queue only what the cap leaves room
   for; the rest stays queued for the other workers sharing the socket.
4. Canary: the private methods of asyncio's selector loop it overrides and calls are there,
   with the parameters it passes on.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
from collections.abc import Iterator

import pytest

from graceful.host.capped_selector import CappedSelectorEventLoop

CAP = 8


class _Hello(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"hello\n")  # and keeps the connection open


@pytest.fixture
def served() -> Iterator[tuple[CappedSelectorEventLoop, asyncio.Server, int]]:
    loop = CappedSelectorEventLoop(cap=CAP)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    server = loop.run_until_complete(loop.create_server(_Hello, "127.0.0.1", 0, backlog=64))
    port = server.sockets[0].getsockname()[1]
    thread.start()
    yield loop, server, port
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


def _hello(conn: socket.socket, timeout: float) -> bool:
    conn.settimeout(timeout)
    try:
        return conn.recv(16) == b"hello\n"
    except TimeoutError:
        return False


def test_1_waits_at_the_cap_then_serves(served):
    loop, _, port = served
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(CAP + 4)]
    try:
        greeted = [c for c in clients if _hello(c, 0.3)]
        waiting = [c for c in clients if c not in greeted]
        # the listener and the loop's self-pipe are watched too: CAP - 2 connections
        assert len(greeted) == CAP - 2, len(greeted)
        assert not loop.is_closed() and loop.is_running()
        for conn in greeted[:3]:
            conn.close()
        let_in = [c for c in waiting if _hello(c, 1.0)]
        assert len(let_in) == 3, len(let_in)
        for conn in greeted[3:] + let_in:
            conn.close()
        assert all(_hello(c, 2.0) for c in waiting if c not in let_in)
    finally:
        for conn in clients:
            conn.close()


def test_2_closed_at_the_cap(served):
    loop, server, port = served
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(CAP)]
    try:
        assert sum(_hello(c, 0.5) for c in clients) == CAP - 2
        listener = server.sockets[0]
        closed = threading.Event()
        loop.call_soon_threadsafe(lambda: (server.close(), closed.set()))
        assert closed.wait(5)
        for conn in clients:
            conn.close()
        threading.Event().wait(0.3)  # a few retries of the paused accept
        assert listener.fileno() == -1 and loop.is_running()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).recv(1)
    finally:
        for conn in clients:
            conn.close()


def test_3_stop_accepts_up_to_the_cap():
    from graceful.http.listeners import Listener

    loop = CappedSelectorEventLoop(cap=CAP)
    listener = Listener(socket.create_server(("127.0.0.1", 0), backlog=64), _Hello)
    port = listener.sock.getsockname()[1]
    clients: list[socket.socket] = []
    try:
        loop.run_until_complete(listener.start(64))
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5)
                   for _ in range(CAP + 4)]
        loop.run_until_complete(asyncio.sleep(0.5))  # accepted up to the cap
        assert sum(_hello(c, 0.2) for c in clients) == CAP - 2
        # the listener has left the selector: room for one more of the 6 still queued
        assert loop.run_until_complete(listener.close()) == 1
        assert loop.sockets_in_use() == CAP
    finally:
        for conn in clients:
            conn.close()
        loop.close()


def test_4_canary_private_methods():
    from asyncio.selector_events import BaseSelectorEventLoop

    for name in ("_accept_connection", "_start_serving"):
        params = list(inspect.signature(getattr(BaseSelectorEventLoop, name)).parameters)
        assert params[:6] == ["self", "protocol_factory", "sock", "sslcontext", "server",
                              "backlog"], (name, params)
    assert hasattr(BaseSelectorEventLoop, "_remove_reader")
