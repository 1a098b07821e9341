"""Listening sockets: bind, serve, and stop accepting without resetting the accept queue.

Closing a listening socket makes the kernel reset every connection still waiting in its
accept queue, although those clients completed the handshake and may have sent their
request. So `close()` first stops the loop's accept loop while a duplicate descriptor keeps
the socket listening, then accepts what the queue holds, then closes the socket, with no
await in between, and hands the accepted connections to the server like any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

ProtocolFactory = Callable[[], asyncio.Protocol]


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free one)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if hasattr(socket, "SO_REUSEADDR") and not _is_windows():
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listener:
    """One listening socket served by the loop."""

    def __init__(self, sock: socket.socket, factory: ProtocolFactory) -> None:
        self.sock = sock
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self._factory = factory
        self._server: asyncio.AbstractServer | None = None
        self._keeper: socket.socket | None = None

    async def start(self, backlog: int) -> None:
        loop = asyncio.get_running_loop()
        self._keeper = self.sock.dup()
        self._server = await loop.create_server(self._factory, sock=self.sock, backlog=backlog)

    async def close(self) -> int:
        """Stop accepting; serve what the accept queue held. Returns how many it held."""
        if self._server is None or self._keeper is None:
            return 0
        loop = asyncio.get_running_loop()
        self._server.close()  # the loop stops accepting; our duplicate keeps the queue
        queued = _accept_all(self._keeper)
        self._keeper.close()  # from here on the kernel refuses new connections
        self._keeper = None
        for conn in queued:
            try:
                await loop.connect_accepted_socket(self._factory, conn)
            except OSError:
                conn.close()
        return len(queued)


def _accept_all(sock: socket.socket) -> list[socket.socket]:
    sock.setblocking(False)
    accepted = []
    while True:
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


def _is_windows() -> bool:
    import sys

    return sys.platform == "win32"
