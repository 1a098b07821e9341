"""A restart's hand-off of keep-alive connections that fails: the old worker keeps them and
closes them as at any stop, nothing lost (POSIX). A Runtime in process with a takeover (the
seam a worker's link to its supervisor fills) whose channel's other end is the test: the
new worker, which never answers, or dies.

1. The new worker never says it got them: after the hand-off's timeout the old worker tells
   it to drop them, reads them again, answers the request a client wrote meanwhile (with
   Connection: close) and closes the idle ones; `restart.connections_kept` is a warning.
2. The new worker is gone before it said it got them: the old worker reads them again at
   once, with the same outcome.
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
