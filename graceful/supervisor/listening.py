"""The supervisor's listening sockets: bound once, handed to every worker, never closed
while the service runs, so that a restart refuses and resets nothing.

Each socket is kept under the option that asked for it (`--host/--port`, one `--bind`,
one `--fd`, or systemd's socket activation), so that a restart with a changed
configuration binds what is new, keeps what is unchanged, and closes what was removed
once the workers that served it have stopped.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterable

from graceful.config import Config
from graceful.errors import ConfigError
from graceful.http import activation, binding
from graceful.http.sockets import bind_all, close_socket

Pair = tuple[str, socket.socket]  # (name announced to the worker, socket)


@dataclasses.dataclass(frozen=True)
class Change:
    """What a restart's configuration changed: the sockets as they were, and the ones it no
    longer asks for (closed once the old workers have stopped)."""

    before: dict[str, list[Pair]]
    closing: list[socket.socket]


def wanted(config: Config) -> list[str]:
    """The keys of the sockets `config` asks for, in the order they are served."""
    if not config.bind and not config.fd:
        return [f"tcp:{config.host}:{config.port}"]
    return [f"bind:{spec}" for spec in config.bind] + [f"fd:{fd}" for fd in config.fd]


class Listening:
    def __init__(self, backlog: int) -> None:
        self._backlog = backlog
        self._by_key: dict[str, list[Pair]] = {}
        self._activated: list[Pair] = []  # systemd's: served as they are, kept for good
        self.metrics: socket.socket | None = None  # --metrics-bind's, passed on by name
        self._count = 0

    def open(self, config: Config) -> None:
        """The first start: systemd's sockets if it passed some, else bind what `config`
        asks for. Raises ConfigError (a port in use, a bad --fd)."""
        inherited, metrics = activation.split_metrics(activation.inherited_sockets() or [])
        if metrics is not None:
            metrics.close()
        if inherited:
            self._activated = inherited
        else:
            self._open_missing(config)
        if config.metrics_bind is not None:
            from graceful.config import parse_bind

            host, port = parse_bind(config.metrics_bind)
            try:
                (self.metrics, *extra) = bind_all(host, port)
            except ConfigError as err:  # said as the metrics' own error
                raise ConfigError(f"cannot serve metrics on {host}:{port}: "
                                  f"{str(err).rpartition(': ')[2]}") from err
            for sock in extra:
                sock.close()
            self.metrics.listen(self._backlog)

    def update(self, config: Config) -> Change:
        """A restart's configuration: bind what is new (ConfigError leaves everything as it
        was). The change says which sockets to close once the old workers have stopped, or
        is undone if the restart fails."""
        before = dict(self._by_key)
        if self._activated:
            return Change(before, [])
        try:
            self._open_missing(config)
        except BaseException:
            self.undo(Change(before, []))
            raise
        keep = set(wanted(config))
        removed = [key for key in self._by_key if key not in keep]
        return Change(before, [sock for key in removed for _, sock in self._by_key.pop(key)])

    def undo(self, change: Change) -> None:
        """A restart that failed: what it bound is closed (nobody would serve it) and what
        it removed is served again, by the old workers and their replacements."""
        kept = {id(sock) for pairs in change.before.values() for _, sock in pairs}
        for pairs in self._by_key.values():
            for _, sock in pairs:
                if id(sock) not in kept:
                    close_socket(sock)
        self._by_key = dict(change.before)

    def pairs(self) -> list[Pair]:
        """What a worker is given, named as it announces them (graceful-N: bound by
        graceful; a socket unit's own names otherwise)."""
        pairs = list(self._activated)
        for own in self._by_key.values():
            pairs += own
        if self.metrics is not None:
            pairs.append((activation.METRICS_NAME, self.metrics))
        return pairs

    def addresses(self) -> list[str]:
        from graceful.http.sockets import format_address

        return [format_address(sock.getsockname()) for name, sock in self.pairs()
                if name != activation.METRICS_NAME]

    def close(self, socks: Iterable[socket.socket] | None = None) -> None:
        if socks is None:
            socks = [sock for _, sock in self.pairs()]
            self._by_key.clear()
            self._activated = []
            self.metrics = None
        for sock in socks:
            close_socket(sock)

    def _open_missing(self, config: Config) -> None:
        for key in wanted(config):
            if key in self._by_key:
                continue
            kind, _, spec = key.partition(":")
            if kind == "tcp":
                socks = bind_all(config.host, config.port, config.reuse_port)
            elif kind == "bind":
                socks = binding.open_sockets("", 0, (spec,), (), config.unix_socket_mode,
                                             config.reuse_port)
            else:
                socks = [binding.adopt_fd(int(spec))]
                socks[0].set_inheritable(False)  # it reaches workers as one of the listeners
            try:
                for sock in socks:
                    sock.listen(config.backlog)
            except BaseException:
                for sock in socks:
                    close_socket(sock)
                raise
            named = []
            for sock in socks:  # graceful-N: bound by graceful (activation.OWN_NAME)
                named.append((f"graceful-{self._count}", sock))
                self._count += 1
            self._by_key[key] = named
