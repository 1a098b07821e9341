"""A restart's idle keep-alive connections, handed to a new worker instead of closed (POSIX).

At a restart the old worker's idle connections (no request in progress, nothing read and
not yet parsed, nothing being written, not TLS, not a websocket: DrainingRequestHandler's
`handable`) go to a new worker over a channel the supervisor gave both
(graceful/supervisor/handoff.py), so their clients never reconnect. The descriptor moves,
the socket stays: what a client writes meanwhile waits in the kernel and is read by the new
worker. Each batch (at most 253 descriptors, one message) is settled in three steps, and
the old worker reads nothing from a connection once it has offered it:

    old                                   new
      pause reading; F + descriptors  ─▶    keep them, read nothing
                                      ◀─    G  (that batch arrived)
      drop its copies (the descriptor
      only: no FIN, no shutdown); R   ─▶    serve them
  or                                  ◀─    N  (not all of it came: out of descriptors; or
                                                it stops too), its copies closed at once
      read again, close as at any stop,
      offer nothing more
  or, no answer within HANDOFF_TIMEOUT_S:
      C (and read again, close as at
      any stop)                       ─▶    close its copies (no FIN: the old one has it)

Every offer gets its own answer, G or N, in the order of the offers: the old worker pairs
each answer with its oldest batch unanswered.

So a connection is answered by one worker only: the new one serves a batch after R, or
after the channel's end with no verdict (the old worker is gone, having read nothing of it
since F); the old one reads again only after C, or after the channel's end with no G (the
new worker is gone, having read nothing). A connection with bytes in flight is never
offered: it is answered and closed by the old worker, as at any stop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from graceful.logs import get_logger

if TYPE_CHECKING:
    from graceful.http.protocol import DrainingRequestHandler

log = get_logger()

HANDOFF_TIMEOUT_S = 5.0  # for the new worker's G: a busy loop's answer still comes in time
OFFER, GOT, NOT_TAKEN, RELEASED, CANCELLED = b"F", b"G", b"N", b"R", b"C"


class HandOff(Protocol):
    """What the drain gives its idle connections to (ConnectionTracker.hand_off)."""

    open: bool  # offers may be made (False once it has failed)

    def offer(self, protocols: Sequence[DrainingRequestHandler]) -> None: ...
    def report(self, closed: int) -> None: ...


class Sender:
    """The old worker's end of a channel."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        channel.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(channel.fileno(), self._readable)
        self._pending: collections.deque[list[DrainingRequestHandler]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._refused = False  # an N: nothing more is offered; pending answers still count
        self.handed = 0
        self.kept = 0  # offered, the hand-off failed: closed as at any stop
        self.failure = ""

    @property
    def open(self) -> bool:
        return not self._closed and not self._refused

    def offer(self, protocols: Sequence[DrainingRequestHandler]) -> None:
        # the supervisor's helper (it sends a worker's setup the same way); imported here:
        # the HTTP side does not import its callers at import time
        from graceful.supervisor.early_worker import in_batches

        if self._closed or self._refused:
            if protocols:
                self.failure = self.failure or "the new worker closed the channel"
            return
        for batch in in_batches(protocols):
            for protocol in batch:
                protocol.hold()
            try:
                socket.send_fds(self._channel, [OFFER], [p.fileno() for p in batch])
            except OSError as err:  # nothing sent: they are ours still
                self._keep(batch)
                self._fail(f"cannot send: {err.strerror or err}")
                return
            self._pending.append(batch)
        if self._pending and self._timer is None:
            self._timer = self._loop.call_later(HANDOFF_TIMEOUT_S, self._timed_out)

    def report(self, closed: int) -> None:
        """Once, at the drain's end: what became of the connections; `closed`: those the
        old worker closed itself (bytes in flight, TLS, websockets, a failed hand-off)."""
        (log.warning if self.failure else log.info)(
            "restart.connections_kept", handed=self.handed, closed=closed, kept=self.kept,
            **({"reason": self.failure} if self.failure else {}))

    def _readable(self) -> None:
        while True:
            try:
                said = self._channel.recv(16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                said = b""
            if not said:  # the channel's end: the new worker is gone
                self._fail("the new worker closed the channel" if self._pending else "")
                return
            if said not in (GOT, NOT_TAKEN) or not self._pending:
                continue
            batch = self._pending.popleft()
            if said == NOT_TAKEN:  # ours again: read again, closed as at any stop
                self._keep(batch)
                # nothing more offered; the channel stays open for the answers to batches
                # offered before (closed, the new worker would serve those as its own)
                self._refused = True
                self.failure = self.failure or ("the new worker could not take them (out of "
                                                "descriptors, or stopping)")
                continue
            for protocol in batch:
                protocol.release()
            self.handed += len(batch)
            with contextlib.suppress(OSError):  # gone now: what it had is lost with it
                self._channel.send(RELEASED)
        if self._timer is not None and not self._pending:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        cancelled: list[list[DrainingRequestHandler]] = []
        while self._pending:
            batch = self._pending.popleft()
            try:
                self._channel.send(CANCELLED)
            except OSError:
                # the new worker cannot be told: it takes what it holds at the channel's
                # end, which comes now, so ours are dropped rather than read again
                for untold in (batch, *self._pending):
                    for protocol in untold:
                        protocol.release()
                    self.handed += len(untold)
                self._pending.clear()
                break
            cancelled.append(batch)
        self._pending.extend(cancelled)  # ours again
        self._fail(f"no answer from the new worker within {HANDOFF_TIMEOUT_S:g}s")

    def _keep(self, batch: list[DrainingRequestHandler]) -> None:
        """Offered and not taken: ours again, read again, closed as at any stop."""
        for protocol in batch:
            protocol.resume()
        self.kept += len(batch)

    def _fail(self, reason: str) -> None:
        """What was offered and not taken is ours again; nothing more is offered."""
        self.failure = self.failure or reason
        for batch in self._pending:
            self._keep(batch)
        self._pending.clear()
        if not self._closed:
            self._closed = True
            self._loop.remove_reader(self._channel.fileno())
            self._channel.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Receiver:
    """The new worker's end of a channel."""

    def __init__(self, channel: socket.socket, factory: Callable[[], asyncio.Protocol],
                 accepting: asyncio.Event, stopping: Callable[[], bool]) -> None:
        self._channel = channel
        self._stopping = stopping  # this worker stops too: its drain may be over
        channel.setblocking(False)
        self._factory = factory
        self._accepting = accepting
        self._undecided: collections.deque[list[socket.socket]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving: set[asyncio.Task[None]] = set()
        self.taken = 0
        self.waiting = 0  # of those, ones whose client had written while they moved

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self._channel.fileno(), self._readable)

    def _readable(self) -> None:
        from graceful.supervisor.early_worker import FDS_PER_MESSAGE

        while True:
            try:
                said, fds, flags, _ = socket.recv_fds(self._channel, 16, FDS_PER_MESSAGE,
                                                      socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                said, fds, flags = b"", [], 0
            if said == OFFER:
                socks = [socket.socket(fileno=fd) for fd in fds]
                if flags & socket.MSG_CTRUNC or self._stopping():
                    # some did not come (out of descriptors), or we stop too: the old worker
                    # keeps the batch; our copies go now (the old worker's keep the
                    # connections open)
                    for sock in socks:
                        sock.close()
                    with contextlib.suppress(OSError):
                        self._channel.send(NOT_TAKEN)
                    continue
                self._undecided.append(socks)
                with contextlib.suppress(OSError):
                    self._channel.send(GOT)
            elif said == RELEASED and self._undecided:
                self._serve(self._undecided.popleft())
            elif said == CANCELLED and self._undecided:
                for sock in self._undecided.popleft():
                    sock.close()
            elif not said:  # the old worker is gone: what it offered is ours alone
                while self._undecided:
                    self._serve(self._undecided.popleft())
                assert self._loop is not None
                self._loop.remove_reader(self._channel.fileno())
                self._channel.close()
                if self.taken:
                    log.info("restart.connections_taken", connections=self.taken,
                             waiting=self.waiting)
                return

    def _serve(self, socks: list[socket.socket]) -> None:
        self.taken += len(socks)
        self.waiting += sum(_has_bytes(sock) for sock in socks)
        task = asyncio.ensure_future(self._adopt(socks))
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _adopt(self, socks: list[socket.socket]) -> None:
        await self._accepting.wait()  # a new worker with a checkpoint: once the state is ours
        assert self._loop is not None
        for sock in socks:
            sock.setblocking(False)
            try:
                await self._loop.connect_accepted_socket(self._factory, sock)
            except OSError:
                sock.close()


def _has_bytes(sock: socket.socket) -> bool:
    """The client has written something not read yet (it waits in the kernel)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except OSError:
        return False
