"""`--bind` and `--fd`: the listening sockets to serve, besides `--host/--port`.

`--bind` is repeatable: `HOST:PORT`, `[V6]:PORT`, `unix:PATH`. `--fd N` serves a socket the
parent already opened (and usually listens on). When either is given, `--host/--port` are
not used. Every socket becomes one `Listener` (graceful/listeners.py): the drain treats them
all the same.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import socket
import stat
import sys

from graceful.errors import ConfigError
from graceful.listeners import bind_all, unlink_at_close

# A live server's socket answers a connect at once; only a full accept queue makes us wait.
_LIVE_PROBE_TIMEOUT_S = 1.0


@dataclasses.dataclass(frozen=True)
class Tcp:
    host: str
    port: int


@dataclasses.dataclass(frozen=True)
class Unix:
    path: str


def parse(spec: str) -> Tcp | Unix:
    """`HOST:PORT`, `[V6]:PORT`, `:PORT` (every interface) or `unix:PATH`."""
    if spec.startswith("unix:"):
        if not spec[5:]:
            raise ConfigError(f"--bind {spec!r}: unix: needs a path (unix:/run/app.sock)")
        return Unix(spec[5:])
    host, sep, port = spec.rpartition(":")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigError(f"--bind {spec!r}: an IPv6 address is written [::1]:8080")
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"--bind {spec!r}: put an IPv6 address in brackets ([::1]:8080)")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--bind {spec!r} is not HOST:PORT, [V6]:PORT or unix:PATH "
                          "(a port is 0 to 65535)")
    return Tcp(host, int(port))


def parse_mode(text: str | int | None) -> int | None:
    """An octal file mode for Unix sockets: `600`, `0o660`, `0660`."""
    if text is None or isinstance(text, int):
        return text
    try:
        mode = int(text.removeprefix("0o"), 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise ConfigError(f"--unix-socket-mode {text!r} is not an octal mode (600, 660, 666)")
    return mode


def open_sockets(host: str, port: int, binds: tuple[str, ...], fds: tuple[int, ...],
                 unix_mode: int | None) -> list[socket.socket]:
    """Bound sockets for every address (not yet listening, except inherited ones)."""
    if not binds and not fds:
        return bind_all(host, port)
    socks: list[socket.socket] = []
    try:
        for spec in binds:
            parsed = parse(spec)
            if isinstance(parsed, Unix):
                socks.append(bind_unix(parsed.path, unix_mode))
            else:
                socks += bind_all(parsed.host, parsed.port)
        socks += [adopt_fd(fd) for fd in fds]
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def bind_unix(path: str, mode: int | None) -> socket.socket:
    """A Unix socket at `path`; a stale socket file (nobody listening) is replaced, one a
    live server holds is refused, a file that is not a socket is never removed."""
    if not hasattr(socket, "AF_UNIX"):
        raise ConfigError(f"cannot listen on unix:{path}: no Unix sockets on this platform")
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise ConfigError(f"cannot listen on unix:{path}: the file exists and is not a "
                              "socket")
        if _is_live(path):
            raise ConfigError(f"cannot listen on unix:{path}: another server is listening "
                              "on it")
        os.unlink(path)  # stale: left by a process that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if mode is not None:
            os.chmod(path, mode)  # before listen(): nobody can connect in between
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on unix:{path}: {err.strerror or err}") from err
    unlink_at_close(sock, path)
    return sock


def _is_live(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(_LIVE_PROBE_TIMEOUT_S)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except TimeoutError:
            return True  # listening, its accept queue full
        except OSError as err:
            raise ConfigError(f"cannot listen on unix:{path}: {err.strerror or err}") from err
        return True


def adopt_fd(fd: int) -> socket.socket:
    """The stream socket open on descriptor `fd` (inherited from the parent)."""
    if sys.platform == "win32":
        raise ConfigError("--fd is not supported on Windows")
    try:
        sock = socket.socket(fileno=fd)
    except OSError as err:
        reason = "not open" if err.errno == errno.EBADF else "not a socket" \
            if err.errno == errno.ENOTSOCK else (err.strerror or str(err))
        raise ConfigError(f"--fd {fd}: {reason}") from err
    if sock.type != socket.SOCK_STREAM or sock.family not in _STREAM_FAMILIES:
        sock.detach()
        raise ConfigError(f"--fd {fd} is not a TCP or Unix stream socket")
    sock.setblocking(False)
    return sock


_STREAM_FAMILIES = {socket.AF_INET, socket.AF_INET6, getattr(socket, "AF_UNIX", -1)}
