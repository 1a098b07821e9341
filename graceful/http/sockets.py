"""Making listening sockets: bind on every address a host resolves to, name an address, and
remove a Unix socket's file when graceful closes the socket it made. No asyncio and no ssl
here: the supervisor binds its sockets with these before anything else is imported, so that
its first workers start as early as they can (graceful/supervisor/start.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import weakref
from typing import Any

from graceful.errors import ConfigError


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


def _is_windows() -> bool:
    import sys

    return sys.platform == "win32"
