"""The supervisor's control socket: how `graceful restart` asks for a restart and learns the
outcome of its own request.

A signal carries no reply and two SIGHUPs sent together arrive as one, so a caller cannot
tell its restart from another's; here each request is a connection, queued, answered with
its own outcome. The address is tied to the supervisor's pid (Linux: an abstract socket in
its network namespace, seen from a `docker exec` or sudo alike; elsewhere a file in the
temporary folder; Windows: a named pipe, which by default only its creator, the
administrators and SYSTEM may write to), not to the caller's environment. Only root and the
supervisor's own user may use it: the same processes that may signal it.

Protocol: one JSON line each way per message. The caller sends {"command": "hello"} or
{"command": "restart"}; "hello" is answered {"graceful": true, "pid": ...}; "restart" with
{"queued": N} (restarts ahead of it) and then {"outcome": "ok"|"failed", ...}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

Handler = Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], Awaitable[None]]


def address(pid: int) -> str:
    """The control socket of supervisor `pid` (as the caller's namespace numbers it). On
    Linux the name holds the supervisor's PID namespace and its pid there: containers that
    share a network namespace (host networking) each have a PID 1 of their own."""
    if sys.platform.startswith("linux"):
        return "\0graceful-supervisor-{}-{}".format(*_namespaced(pid))
    if sys.platform == "win32":  # a named pipe: its default DACL lets only the creator
        return rf"\\.\pipe\graceful-supervisor-{pid}"  # (and admins, SYSTEM) write
    return os.path.join(tempfile.gettempdir(), f"graceful-supervisor-{pid}.sock")


def _namespaced(pid: int) -> tuple[int, int]:
    """(the inode of `pid`'s PID namespace, its pid in that namespace)."""
    try:
        namespace = os.stat(f"/proc/{pid}/ns/pid").st_ino
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return namespace, int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return 0, pid


_bound_early: socket.socket | None = None  # listen_early()'s


def listen_early() -> None:
    """Listen on the control socket from the supervisor's first steps (start.py, POSIX): a
    `graceful restart` asked for while the first workers start then waits in its queue and
    is answered once they serve (queued as a SIGHUP is), instead of finding no supervisor.
    A failure is left for ControlServer.start() to meet and report."""
    global _bound_early
    if sys.platform != "win32" and _bound_early is None:
        with contextlib.suppress(OSError):
            _bound_early = _listen(address(os.getpid()))


def _listen(path: str) -> socket.socket:
    if not path.startswith("\0"):
        with contextlib.suppress(OSError):  # a file left by a supervisor killed with pid
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        if not path.startswith("\0"):
            os.chmod(path, 0o600)
        sock.listen(100)
    except OSError:
        sock.close()
        raise
    return sock


class ControlServer:
    def __init__(self, handle: Handler) -> None:
        self._handle = handle
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        global _bound_early
        path = address(os.getpid())
        if sys.platform == "win32":
            await self._start_pipe(path)
            return
        sock, _bound_early = _bound_early or _listen(path), None
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)

    async def _start_pipe(self, path: str) -> None:
        """Windows: the Proactor loop's pipe server (no Unix sockets for asyncio there)."""
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            return asyncio.StreamReaderProtocol(asyncio.StreamReader(), self._serve)

        start_serving_pipe = getattr(loop, "start_serving_pipe", None)
        if start_serving_pipe is None:
            raise OSError(f"{type(loop).__name__} serves no named pipes")
        [self._server] = await start_serving_pipe(protocol, path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            if sys.platform == "win32":
                return
            path = address(os.getpid())
            if not path.startswith("\0"):
                with contextlib.suppress(OSError):
                    os.unlink(path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            if not _allowed(sock):
                writer.write(b'{"error": "not allowed"}\n')
                return
            line = await asyncio.wait_for(reader.readline(), 5.0)
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                writer.write(b'{"error": "one JSON object per line"}\n')
                return

            def reply(answer: dict[str, Any]) -> None:
                if not writer.is_closing():
                    writer.write(json.dumps(answer).encode() + b"\n")

            await self._handle(message, reply)
            await writer.drain()
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def _allowed(sock: Any) -> bool:
    peercred = getattr(socket, "SO_PEERCRED", None)
    if sock is None or peercred is None:
        return True  # no peer credentials here: the socket file's own mode guards it
    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, peercred,
                                                    struct.calcsize("3i")))
    return uid in (0, os.getuid())


class NotASupervisor(Exception):
    """Nothing answers as a graceful supervisor for that pid."""


def ask(pid: int, command: str, timeout: float) -> Any:
    """Send `command` to the supervisor `pid`; yield each answer as it arrives (a generator
    of dicts). Raises NotASupervisor when no supervisor listens for that pid."""
    if sys.platform == "win32":
        yield from _ask_pipe(pid, command)
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address(pid))
    except OSError as err:
        sock.close()
        raise NotASupervisor(str(err)) from None
    with sock, sock.makefile("rb") as answers:
        sock.sendall(json.dumps({"command": command}).encode() + b"\n")
        for line in answers:
            try:
                yield json.loads(line)
            except ValueError:
                return


def _ask_pipe(pid: int, command: str) -> Any:
    """Windows: the supervisor's named pipe, one JSON line each way per message."""
    try:
        pipe = open(address(pid), "r+b", buffering=0)  # noqa: SIM115
    except OSError as err:
        raise NotASupervisor(str(err)) from None
    with pipe:
        pipe.write(json.dumps({"command": command}).encode() + b"\n")
        rest = b""
        while chunk := pipe.read(65536):
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                try:
                    yield json.loads(line)
                except ValueError:
                    return
