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
import os
import socket
import ssl
import weakref
from collections.abc import Callable
from typing import Any

from graceful.errors import ConfigError

ProtocolFactory = Callable[[], asyncio.Protocol]
# A client in the accept queue sent its ClientHello long ago: its handshake takes a round
# trip. This bounds one that does not (asyncio's default would be 60 s).
QUEUED_TLS_HANDSHAKE_S = 5.0


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free one): the first address."""
    family, address = _addresses(host, port)[0]
    sock = _bound(family, address)
    sock.listen(backlog)
    return sock


def bind_all(host: str, port: int, reuse_port: bool = False) -> list[socket.socket]:
    """Bound (not yet listening) sockets on every address `host` resolves to, as asyncio's
    create_server and so run_app do: "" is every interface, IPv4 and IPv6 where the machine
    has it. With port 0 they all share the port the first one got. Listening starts when the
    app is ready (`Listener.start`): until then a connection is refused, not left waiting.

    Raises ConfigError naming the address: a host that does not resolve, a port in use.
    `reuse_port` sets SO_REUSEPORT (run_app's reuse_port): several processes share the port.
    """
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise ConfigError("--reuse-port: SO_REUSEPORT is not available on this platform")
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
                socks.append(_bound(family, address, reuse_port))
            except OSError as err:
                if not host and err.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    continue  # every interface: a family this machine lacks is skipped
                raise ConfigError(f"cannot listen on {format_address(address)}: "
                                  f"{_reason(err, address[1])}") from err
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    if not socks:
        raise ConfigError(f"cannot listen on {host or '*'}:{port}: no usable address")
    return socks


def _addresses(host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
    if (numeric := _numeric(host, port)) is not None:
        return [numeric]
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    unique: dict[tuple[Any, ...], int] = {}
    for family, _, _, _, address in infos:
        unique.setdefault(address, family)
    return [(family, address) for address, family in unique.items()]


def _numeric(host: str, port: int) -> tuple[int, tuple[Any, ...]] | None:
    """A numeric IPv4 or IPv6 address, as getaddrinfo would give it, without the resolver:
    asyncio's create_server (and so run_app) skips it too, and its first call (the idna
    codec's import, the resolver's setup) was 1 to 13 ms of the start. None otherwise."""
    if not host or "%" in host:  # every interface; a scoped IPv6 address: the resolver's
        return None
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            text = socket.inet_ntop(family, socket.inet_pton(family, host))
        except (OSError, ValueError):
            continue
        return (family, (text, port)) if family == socket.AF_INET else (family, (text, port, 0, 0))
    return None


def _bound(family: int, address: tuple[Any, ...], reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if hasattr(socket, "SO_REUSEADDR") and not _is_windows():
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def _reason(err: OSError, port: int) -> str:
    if err.errno == errno.EACCES and 0 < port < 1024:
        return ("permission denied: ports below 1024 are privileged (run as root, grant "
                "CAP_NET_BIND_SERVICE, or pick a port >= 1024)")
    return err.strerror or str(err)


# Unix socket files this process created, removed when their listener closes.
_UNLINK_AT_CLOSE: weakref.WeakKeyDictionary[socket.socket, str] = weakref.WeakKeyDictionary()


def unlink_at_close(sock: socket.socket, path: str) -> None:
    _UNLINK_AT_CLOSE[sock] = path


def close_socket(sock: socket.socket) -> None:
    """Close a listening socket that no Listener serves, removing its file if it is ours."""
    sock.close()
    _unlink(sock)


def _unlink(sock: socket.socket) -> None:
    path = _UNLINK_AT_CLOSE.pop(sock, None)
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)


def format_address(address: tuple[Any, ...] | str) -> str:
    if isinstance(address, str):  # a Unix socket's path
        return f"unix:{address}"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
            self._server.close()  # the loop stops accepting; our duplicate keeps the queue
            self._server = None
        else:  # paused (or a resume cut short by the stop): the loop accepts no more
            self.sock.close()  # closed already, unless the resume was cut before serving it
        queued = _accept_all(self._keeper)
        self._keeper.close()  # from here on the kernel refuses new connections
        self._keeper = None
        _unlink(self.sock)
        await self._serve(queued)
        return len(queued)

    async def pause(self) -> int:
        """Stop accepting, serve what the accept queue held, and keep the socket listening:
        connections made from now on wait in the kernel's queue until `resume` (see
        graceful/pause.py). Returns how many the queue held."""
        if self._server is None or self._keeper is None:
            return 0
        self._server.close()  # closes self.sock; the duplicate keeps listening
        self._server = None
        queued = _accept_all(self._keeper)
        if _is_windows():
            # The Proactor loop cannot serve a listening socket again once it has stopped
            # serving it (its handle is tied to the loop's completion port: WinError 87 at
            # every accept): close it, and bind the address again at resume. Connections
            # made while paused are refused on Windows. (No Unix sockets there: binding one
            # is refused, graceful/http/binding.py, so the address is always (host, port).)
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
