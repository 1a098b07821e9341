"""Listening sockets: bind, serve, and stop accepting without resetting the accept queue.

Closing a listening socket makes the kernel reset every connection still waiting in its
accept queue, although those clients completed the handshake and may have sent their
request. So `close()` first stops the loop's accept loop while a duplicate descriptor keeps
the socket listening, then accepts what the queue holds, then closes the socket, with no
await in between, and hands the accepted connections to the server like any other. On
Windows the Proactor loop may hold a connection already accepted: it is served first
(proactor_accept.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable

from graceful.http import proactor_accept
from graceful.http.sockets import (  # noqa: F401  (bind_all, _numeric: used through here)
    _UNLINK_AT_CLOSE,
    _bound,
    _is_windows,
    _numeric,
    _unlink,
    bind,
    bind_all,
    close_socket,
    format_address,
    unlink_at_close,
)

ProtocolFactory = Callable[[], asyncio.Protocol]
# A client in the accept queue sent its ClientHello long ago: its handshake takes a round
# trip. This bounds one that does not (asyncio's default would be 60 s).
QUEUED_TLS_HANDSHAKE_S = 5.0


class Listener:
    """One listening socket served by the loop."""

    def __init__(self, sock: socket.socket, factory: ProtocolFactory, *,
                 ssl: ssl.SSLContext | None = None, name: str = "") -> None:
        self.sock = sock
        self.name = name  # LISTEN_FDNAMES: a restart and systemd's fd store pass it on
        bound = sock.getsockname()
        # (host, port), or a Unix socket's path
        self.address: tuple[str, int] | str = bound if isinstance(bound, str) else bound[:2]
        self._family = sock.family
        self._factory = factory
        self._ssl = ssl
        self._rebind = False  # paused on Windows: resume binds the address again
        self._server: asyncio.AbstractServer | None = None
        self._keeper: socket.socket | None = None

    async def start(self, backlog: int) -> None:
        loop = asyncio.get_running_loop()
        self._keeper = self.sock.dup()
        self._server = await loop.create_server(self._factory, sock=self.sock, backlog=backlog,
                                                ssl=self._ssl)

    async def close(self) -> int:
        """Stop accepting; serve what the accept queue held. Returns how many it held."""
        if self._keeper is None:
            self.sock.close()  # never started (the start failed): nothing was queued
            _unlink(self.sock)
            return 0
        if self._server is not None:
            await proactor_accept.let_accepted_in(self._server)  # Windows: see there
            self._server.close()  # the loop stops accepting; our duplicate keeps the queue
            self._server = None
        else:  # paused (or a resume cut short by the stop): the loop accepts no more
            self.sock.close()  # closed already, unless the resume was cut before serving it
        queued = _accept_all(self._keeper, _room())
        self._keeper.close()  # from here on the kernel refuses new connections
        self._keeper = None
        _unlink(self.sock)
        await self._serve(queued)
        return len(queued)

    async def pause(self) -> int:
        """Stop accepting, serve what the accept queue held, and keep the socket listening:
        connections made from now on wait in the kernel's queue until `resume` (see
        graceful/lifecycle/pause.py). Returns how many the queue held."""
        if self._server is None or self._keeper is None:
            return 0
        await proactor_accept.let_accepted_in(self._server)
        self._server.close()  # closes self.sock; the duplicate keeps listening
        self._server = None
        queued = _accept_all(self._keeper, _room())
        if _is_windows() and proactor_accept.supported(asyncio.get_running_loop()):
            # The Proactor loop cannot serve a listening socket again once it has stopped
            # serving it (its handle is tied to the loop's completion port: WinError 87 at
            # every accept): close it, and bind the address again at resume. Connections
            # made while paused are refused there. (No Unix sockets on Windows: binding one
            # is refused, graceful/http/binding.py, so the address is always (host, port).)
            # Other loops (winloop, a Windows worker's selector loop) keep it listening, as
            # on POSIX: a worker could not bind again a port its supervisor holds.
            self._keeper.close()
            self._keeper, self._rebind = None, True
        await self._serve(queued)
        return len(queued)

    async def resume(self, backlog: int) -> None:
        """Accept again, after `pause`: first what waited in the queue."""
        if self._server is not None:
            return
        if self._keeper is None:
            if not self._rebind:
                return  # closed for good
            assert not isinstance(self.address, str)
            self._keeper = _bound(self._family, self.address)  # OSError: the port is taken
            self._rebind = False
        loop = asyncio.get_running_loop()
        path = _UNLINK_AT_CLOSE.pop(self.sock, None)
        self.sock, self._keeper = self._keeper, self._keeper.dup()
        if path is not None:  # the socket file goes at close, whichever descriptor serves it
            unlink_at_close(self.sock, path)
        self._server = await loop.create_server(self._factory, sock=self.sock, backlog=backlog,
                                                ssl=self._ssl)

    async def _serve(self, queued: list[socket.socket]) -> None:
        if self._ssl is None:
            loop = asyncio.get_running_loop()
            for conn in queued:
                try:
                    await loop.connect_accepted_socket(self._factory, conn)
                except OSError:
                    conn.close()
        else:
            # Over TLS connect_accepted_socket returns after the handshake: all at once,
            # each bounded, so that one slow client in the queue does not hold the others.
            await asyncio.gather(*(self._handshake(conn) for conn in queued))

    async def _handshake(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(self._factory, conn, ssl=self._ssl,
                                               ssl_handshake_timeout=QUEUED_TLS_HANDSHAKE_S)
        except (OSError, ssl.SSLError, TimeoutError):
            conn.close()


def _room() -> int | None:
    """How many more connections the running loop can watch: a Windows worker's selector
    loop has a cap (graceful/host/capped_selector.py), past which the connections still
    queued are left to the other workers sharing the socket. None: no cap."""
    room = getattr(asyncio.get_running_loop(), "accept_room", None)
    return None if room is None else room()


def _accept_all(sock: socket.socket, limit: int | None = None) -> list[socket.socket]:
    sock.setblocking(False)
    accepted: list[socket.socket] = []
    while limit is None or len(accepted) < limit:
        try:
            conn, _ = sock.accept()
        except (BlockingIOError, InterruptedError):
            return accepted
        except OSError:
            return accepted
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.setblocking(False)
        accepted.append(conn)
    return accepted
