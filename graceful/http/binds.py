"""`--bind` values and `--unix-socket-mode`, parsed (and so validated by Config); the
sockets themselves are opened by graceful/http/binding.py.

`--bind` is repeatable: `HOST:PORT`, `[V6]:PORT`, `unix:PATH`.
"""

from __future__ import annotations

import dataclasses

from graceful.errors import ConfigError, literal


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
            raise ConfigError(f"{{bind}} {literal(spec)}: unix: needs a path "
                              "(unix:/run/app.sock)", fields=["bind"])
        return Unix(spec[5:])
    host, sep, port = spec.rpartition(":")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigError(f"{{bind}} {literal(spec)}: an IPv6 address is written "
                              "[::1]:8080", fields=["bind"])
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"{{bind}} {literal(spec)}: put an IPv6 address in brackets "
                          "([::1]:8080)", fields=["bind"])
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{{bind}} {literal(spec)} is not HOST:PORT, [V6]:PORT or unix:PATH "
                          "(a port is 0 to 65535)", fields=["bind"])
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
        raise ConfigError(f"{{unix_socket_mode}} {literal(text)} is not an octal mode "
                          "(600, 660, 666)", fields=["unix_socket_mode"])
    return mode
