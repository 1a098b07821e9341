"""`--bind` and `--fd`: the listening sockets to serve, besides `--host/--port`.

`--fd N` serves a socket the parent already opened (and usually listens on). When `--bind`
or `--fd` is given, `--host/--port` are not used. Every socket becomes one `Listener`
(listeners.py): the drain treats them all the same.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import sys

from graceful.errors import ConfigError
from graceful.http.binds import Unix, parse
from graceful.http.sockets import bind_all, unlink_at_close

# A live server's socket answers a connect at once; only a full accept queue makes us wait.
_LIVE_PROBE_TIMEOUT_S = 1.0


def open_sockets(host: str, port: int, binds: tuple[str, ...], fds: tuple[int, ...],
                 unix_mode: int | None, reuse_port: bool = False) -> list[socket.socket]:
    """Bound sockets for every address (not yet listening, except inherited ones)."""
    if not binds and not fds:
        return bind_all(host, port, reuse_port)
    socks: list[socket.socket] = []
    try:
        for spec in binds:
            parsed = parse(spec)
            if isinstance(parsed, Unix):
                socks.append(bind_unix(parsed.path, unix_mode))
            else:
                socks += bind_all(parsed.host, parsed.port, reuse_port)
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
