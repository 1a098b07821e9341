"""A restart's hand-off of keep-alive connections that fails: the old worker keeps them and
closes them as at any stop, nothing lost (POSIX). A Runtime in process with a takeover (the
seam a worker's link to its supervisor fills) whose channel's other end is the test: the
new worker, which never answers, or dies.

1. The new worker never says it got them: after the hand-off's timeout the old worker tells
   it to drop them, reads them again, answers the request a client wrote meanwhile (with
   Connection: close) and closes the idle ones; `restart.connections_kept` is a warning.
2. The new worker is gone before it said it got them: the old worker reads them again at
   once, with the same outcome.
3. Two offers, the idle connection at once and the busy one once its response is out; the
   new worker answers N to the first (not all of it came: it was out of descriptors) and
   G to the second: the first stays the old worker's (its client is answered, Connection:
   close), only the second is released. (Before, the old worker took the G as the first
   batch's and dropped that one: its clients were cut.)
4. The new worker's side: a batch that comes truncated (MSG_CTRUNC: out of descriptors)
   is answered N at once, and its descriptors that did come are closed.
"""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest
from structlog.testing import capture_logs

import graceful
from graceful.bridge.stop import StopRequest, StopSource
from graceful.http import handoff
from graceful.testing.http import Connection
from tests.apps import answers_pid

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")


class Link:
    """A worker's link as the runtime sees it, with a channel to a 'new worker' (the test)."""

    lock_fd = None

    def __init__(self) -> None:
        self.ours, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    async def before_accepting(self, checkpointer, state) -> None:
        return None

    def take_connections(self, factory, accepting, stopping) -> None:
        return None

    def hand_off(self) -> handoff.Sender:
        return handoff.Sender(self.ours)


async def _offered(peer: socket.socket) -> list[int]:
    """The descriptors of the first offer on the channel, as the new worker receives them."""
    peer.setblocking(False)
    while True:
        try:
            said, fds, _, _ = socket.recv_fds(peer, 16, 253)
        except BlockingIOError:
            await asyncio.sleep(0.005)
            continue
        assert said == handoff.OFFER
        return fds


async def _scenario(monkeypatch, peer_dies: bool) -> None:
    monkeypatch.setattr(handoff, "HANDOFF_TIMEOUT_S", 0.3)
    link = Link()
    runtime = graceful.Runtime(answers_pid(), graceful.Config(port=0, drain_timeout=5),
                               takeover=link)
    with capture_logs() as logs:
        async with runtime:
            idle = await Connection.open(runtime.port)
            writer = await Connection.open(runtime.port)
            for conn in (idle, writer):
                assert (await conn.request("GET", "/pid")).status == 200
            runtime.request_stop(StopRequest(StopSource.RESTART, "replaced"))
            fds = await _offered(link.peer)
            assert len(fds) == 2
            writer.send("GET", "/pid")  # while its descriptor is out: kept in the kernel
            if peer_dies:
                for fd in fds:
                    socket.socket(fileno=fd).close()
                link.peer.close()
            else:  # silent until the old worker's verdict, then drops its copies
                loop = asyncio.get_running_loop()
                said = await loop.sock_recv(link.peer, 16)
                assert said == handoff.CANCELLED
                for fd in fds:
                    socket.socket(fileno=fd).close()
            response = await asyncio.wait_for(writer.read_response(), 10)
            assert response.status == 200 and response.closes
            assert await idle.at_eof()
            code = await runtime.wait_stopped()
    assert code == 0
    kept = next(e for e in logs if e["event"] == "restart.connections_kept")
    assert (kept["handed"], kept["kept"], kept["log_level"]) == (0, 2, "warning"), kept


async def test_a_new_worker_that_never_answers_leaves_the_connections_to_the_old(monkeypatch):
    """1."""
    await _scenario(monkeypatch, peer_dies=False)


async def test_a_new_worker_gone_before_it_answered_leaves_them_to_the_old(monkeypatch):
    """2."""
    await _scenario(monkeypatch, peer_dies=True)


async def test_each_offer_has_its_own_answer(monkeypatch):
    """3."""
    monkeypatch.setattr(handoff, "HANDOFF_TIMEOUT_S", 30.0)  # an answer, not the timeout
    link = Link()
    runtime = graceful.Runtime(answers_pid(), graceful.Config(port=0, drain_timeout=10),
                               takeover=link)
    loop = asyncio.get_running_loop()
    with capture_logs() as logs:
        async with runtime:
            idle = await Connection.open(runtime.port)
            busy = await Connection.open(runtime.port)
            assert (await idle.request("GET", "/pid")).status == 200
            busy.send("GET", "/slow?s=0.5")
            await asyncio.sleep(0.1)  # in its handler
            runtime.request_stop(StopRequest(StopSource.RESTART, "replaced"))
            first = await _offered(link.peer)
            assert len(first) == 1
            for fd in first:  # not all of it came, say
                socket.socket(fileno=fd).close()
            assert (await asyncio.wait_for(busy.read_response(), 10)).status == 200
            second = await _offered(link.peer)  # the busy one, once its response is out
            assert len(second) == 1
            link.peer.send(handoff.NOT_TAKEN)  # the first
            link.peer.send(handoff.GOT)  # the second
            assert await loop.sock_recv(link.peer, 16) == handoff.RELEASED
            idle.send("GET", "/pid")
            response = await asyncio.wait_for(idle.read_response(), 10)
            assert response.status == 200 and response.closes  # the old worker's again
            taken = socket.socket(fileno=second[0])
            busy.send("GET", "/pid")  # to the 'new worker' (the test), on the same connection
            taken.setblocking(False)
            request = await asyncio.wait_for(loop.sock_recv(taken, 4096), 10)
            assert request.startswith(b"GET /pid ")
            taken.close()
            link.peer.close()
            code = await runtime.wait_stopped()
    assert code == 0
    kept = next(e for e in logs if e["event"] == "restart.connections_kept")
    assert (kept["handed"], kept["kept"], kept["log_level"]) == (1, 1, "warning"), kept


async def test_a_truncated_offer_is_answered_not_taken():
    """4."""
    import resource

    old, new = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sent = [socket.socket() for _ in range(3)]
    accepting = asyncio.Event()
    receiver = handoff.Receiver(new, asyncio.Protocol, accepting, lambda: False)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    loop = asyncio.get_running_loop()
    try:
        socket.send_fds(old, [handoff.OFFER], [sock.fileno() for sock in sent])
        # room for one of the three: the kernel truncates the rest (MSG_CTRUNC)
        resource.setrlimit(resource.RLIMIT_NOFILE, (_lowest_free_fd() + 1, hard))
        receiver.start(loop)
        old.setblocking(False)
        said = await asyncio.wait_for(loop.sock_recv(old, 16), 10)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert said == handoff.NOT_TAKEN
    assert receiver.taken == 0
    for sock in sent:
        sock.close()
    old.close()
    await asyncio.sleep(0.05)  # the receiver sees the channel's end


def _lowest_free_fd() -> int:
    import os

    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


async def test_a_request_taken_from_the_queue_and_not_started_is_not_handable():
    """5. Between aiohttp's connection task taking a pipelined request off its queue and
    that request's task starting (a loop iteration on Python 3.11, where tasks do not start
    eagerly), nothing shows the request: the queue is empty and no request is in progress.
    The connection is not between requests (its task does not wait for one): not handable.
    (It was: a restart handed it, and the request died with the old worker.)"""
    from aiohttp import web

    seen: list[bool] = []

    async def first(request: web.Request) -> web.Response:
        protocol = request.protocol
        make = protocol._request_factory

        def watching(*args):  # aiohttp calls it between taking a request and starting it
            seen.append(protocol.handable)
            return make(*args)

        protocol._request_factory = watching
        await asyncio.sleep(0.2)
        return web.Response(text="first")

    async def second(request: web.Request) -> web.Response:
        return web.Response(text="second")

    app = web.Application()
    app.router.add_get("/first", first)
    app.router.add_get("/second", second)
    runtime = graceful.Runtime(app, graceful.Config(port=0, drain_timeout=5))
    async with runtime:
        conn = await Connection.open(runtime.port)
        conn.writer.write(b"GET /first HTTP/1.1\r\nHost: t\r\n\r\n"
                          b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await asyncio.wait_for(conn.read_response(), 10)).text() == "first"
        assert (await asyncio.wait_for(conn.read_response(), 10)).text() == "second"
        conn.close()
        runtime.request_stop(StopRequest(StopSource.API, "done"))
        assert await runtime.wait_stopped() == 0
    assert seen == [False]
