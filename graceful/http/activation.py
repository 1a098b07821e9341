"""Listening sockets handed to this process (systemd socket activation, sd_listen_fds(3)).

systemd, `systemd-socket-activate` and graceful's supervisor (to its workers) pass
listening sockets as descriptors 3, 4, ... and announce them in the environment:
LISTEN_FDS (how many), LISTEN_PID (the pid they are meant for, so that a child that
inherits the environment does not take them too) and LISTEN_FDNAMES (colon-separated).
The one named graceful-metrics is the metrics listener, not the app's (`split_metrics`).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import MutableMapping

from graceful.errors import ConfigError

FIRST_FD = 3  # SD_LISTEN_FDS_START
OWN_NAME = re.compile(r"graceful-[0-9]+")  # sockets graceful bound (not a socket unit's)
METRICS_NAME = "graceful-metrics"  # --metrics-bind's listener, handed over by a restart


def own_names(sockets: list[socket.socket]) -> list[tuple[str, socket.socket]]:
    """Sockets this process bound, named as a restart and systemd's fd store pass them on
    (an FDNAME has no colon)."""
    return [(f"graceful-{i}", sock) for i, sock in enumerate(sockets)]


def inherited_sockets(environ: MutableMapping[str, str] = os.environ
                      ) -> list[tuple[str, socket.socket]] | None:
    """The (name, socket) pairs announced for this process, or None when there are none.

    The variables are removed from `environ`, as sd_listen_fds(unset_environment=1) does:
    a process the application starts must not take the sockets for its own. Each socket is
    made non-inheritable and non-blocking. Raises ConfigError for a descriptor that is not
    a listening stream socket (a unit that names a FIFO or a datagram socket).
    """
    pid, count = environ.get("LISTEN_PID"), environ.get("LISTEN_FDS")
    names = environ.get("LISTEN_FDNAMES", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    if pid is None or count is None or not pid.isdigit() or int(pid) != os.getpid():
        return None
    try:
        n = int(count)
    except ValueError:
        raise ConfigError(f"LISTEN_FDS must be a number, got {count!r}") from None
    labels = names.split(":") if names else []
    sockets = []
    for i in range(n):
        fd = FIRST_FD + i
        label = labels[i] if i < len(labels) else "unknown"
        try:
            sock = socket.socket(fileno=fd)
        except OSError as err:
            raise ConfigError(f"inherited descriptor {fd} ({label}) is not a socket: "
                              f"{err.strerror or err}") from err
        if sock.type != socket.SOCK_STREAM or not sock.getsockopt(socket.SOL_SOCKET,
                                                                    socket.SO_ACCEPTCONN):
            raise ConfigError(f"inherited descriptor {fd} ({label}) is not a listening "
                              "stream socket")
        sock.set_inheritable(False)
        sock.setblocking(False)
        sockets.append((label, sock))
    return sockets or None


def split_metrics(sockets: list[tuple[str, socket.socket]]
                  ) -> tuple[list[tuple[str, socket.socket]], socket.socket | None]:
    """The app's sockets, and the metrics listener among them (METRICS_NAME) if there is
    one: it is served by graceful/metrics/endpoint.py, never as one of the app's listeners."""
    metrics = [sock for name, sock in sockets if name == METRICS_NAME]
    for extra in metrics[1:]:  # named twice (a socket unit's doing): one serves
        extra.close()
    return [pair for pair in sockets if pair[0] != METRICS_NAME], (metrics or [None])[0]
