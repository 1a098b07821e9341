"""asyncio's selector loop for a Windows worker, which stops accepting before select() would
see more sockets than it can take.

CPython's `select()` on Windows takes at most 512 sockets (FD_SETSIZE) and raises
ValueError beyond: asyncio's selector loop then dies with every connection it holds (under
Wine, 1,500 idle connections on 2 workers: the worker crashed, 720 connections reset).
This loop accepts only while the sockets it watches, with those accepted and not yet
watched, stay under `cap`; at the cap it stops watching the listening socket, and the
connections wait in the kernel's accept queue (shared with the other workers, which may
take them) until a connection of its own closes. A client then waits instead of being
reset. The room between the cap and 512 is for the app's own sockets (a ClientSession's
connections, a database driver's).

It relies on two private methods of asyncio's selector loop, `_accept_connection` (called
with the listening socket each time select() finds it readable; it accepts up to
`backlog` connections) and `_start_serving` (watches the listening socket);
tests/test_capped_selector.py fails if they change.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

SELECT_LIMIT = 512  # FD_SETSIZE of CPython's select module on Windows
DEFAULT_CAP = 448
RETRY_S = 0.05  # while at the cap: how often to look whether a connection has closed


class _Counted:
    """The listening socket as `_accept_connection` sees it: counts each accepted
    connection, and answers "nothing queued" once `room` have been accepted."""

    def __init__(self, sock: socket.socket, room: int, accepted: list[socket.socket]) -> None:
        self._sock, self._room, self._accepted = sock, room, accepted

    def accept(self) -> tuple[socket.socket, Any]:
        if self._room <= 0:
            raise BlockingIOError
        conn, address = self._sock.accept()
        self._room -= 1
        self._accepted.append(conn)
        return conn, address

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class CappedSelectorEventLoop(asyncio.SelectorEventLoop):
    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        super().__init__()
        self._cap = cap
        self._not_watched: list[socket.socket] = []  # accepted, not yet given to the selector

    def sockets_in_use(self) -> int:
        """Sockets the selector watches, and accepted connections it does not watch yet
        (their transport registers them a loop iteration or two later)."""
        watched = self._selector.get_map()  # type: ignore[attr-defined]
        self._not_watched = [c for c in self._not_watched
                             if c.fileno() != -1 and c.fileno() not in watched]
        return len(watched) + len(self._not_watched)

    def accept_room(self) -> int:
        """How many more connections may be accepted now (graceful/http/listeners.py asks
        before it accepts what the queue holds at a stop)."""
        return max(self._cap - self.sockets_in_use(), 0)

    def _accept_connection(self, protocol_factory: Any, sock: socket.socket,
                           *args: Any, **kwargs: Any) -> None:
        if isinstance(sock, _Counted):  # asyncio's retry after EMFILE hands our wrapper back
            sock = sock._sock
        room = self._cap - self.sockets_in_use()
        if room <= 0:
            self._remove_reader(sock.fileno())  # type: ignore[attr-defined]
            self.call_later(RETRY_S, self._resume, protocol_factory, sock, args, kwargs)
            return
        super()._accept_connection(  # type: ignore[misc]
            protocol_factory, _Counted(sock, room, self._not_watched), *args, **kwargs)

    def _resume(self, protocol_factory: Any, sock: socket.socket, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> None:
        if sock.fileno() == -1:  # the server closed it meanwhile: it stopped accepting
            return
        if self.sockets_in_use() + 1 >= self._cap:  # the listener itself, and one connection
            self.call_later(RETRY_S, self._resume, protocol_factory, sock, args, kwargs)
            return
        self._start_serving(protocol_factory, sock, *args, **kwargs)  # type: ignore[attr-defined]
