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
import errno
import socket
from collections.abc import Callable
from typing import Any

from graceful.errors import ConfigError

ProtocolFactory = Callable[[], asyncio.Protocol]


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free one): the first address."""
    family, address = _addresses(host, port)[0]
    sock = _bound(family, address)
    sock.listen(backlog)
    return sock


def bind_all(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) sockets on every address `host` resolves to, as asyncio's
    create_server and so run_app do: "" is every interface, IPv4 and IPv6 where the machine
    has it. With port 0 they all share the port the first one got. Listening starts when the
    app is ready (`Listener.start`): until then a connection is refused, not left waiting.

    Raises ConfigError naming the address: a host that does not resolve, a port in use.
    """
    try:
        addresses = _addresses(host, port)
    except socket.gaierror as err:
        raise ConfigError(f"cannot listen on {host}:{port}: the host does not resolve "
                          f"({err.strerror})") from err
    socks: list[socket.socket] = []
    try:
        for family, address in addresses:
            if socks and port == 0:
                address = (address[0], socks[0].getsockname()[1], *address[2:])
            try:
                socks.append(_bound(family, address))
            except OSError as err:
                if not host and err.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    continue  # every interface: a family this machine lacks is skipped
                raise ConfigError(f"cannot listen on {format_address(address)}: "
                                  f"{err.strerror or err}") from err
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    if not socks:
        raise ConfigError(f"cannot listen on {host or '*'}:{port}: no usable address")
    return socks


def _addresses(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    unique: dict[tuple[Any, ...], int] = {}
    for family, _, _, _, address in infos:
        unique.setdefault(address, family)
    return [(family, address) for address, family in unique.items()]


def _bound(family: int, address: tuple[Any, ...]) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if hasattr(socket, "SO_REUSEADDR") and not _is_windows():
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def format_address(address: tuple[Any, ...]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
            self.sock.close()  # never started (the start failed): nothing was queued
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
