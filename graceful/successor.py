"""A spawned successor seen from the old process: its start (the listening sockets on
descriptors 3, 4, ... announced as systemd does, its own process group), its ready pipe,
its log pipe (forwarded line by line, the last lines kept) and its exit."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import socket
from collections.abc import Sequence

from graceful.http.activation import FIRST_FD
from graceful.preload import READY_FD_ENV

LOG_FD_ENV = "GRACEFUL_RESTART_LOG_FD"
PREDECESSOR_ENV = "GRACEFUL_PREDECESSOR_PID"
LOG_TAIL = 20  # lines of a failed successor's log repeated in restart.failed
END_GRACE_S = 3.0  # a failed successor gets this long to exit on SIGTERM before SIGKILL
# sh enters the folder ($1: a path, so that a symlink is followed as it is now), and sets
# LISTEN_PID to its own pid, which exec keeps: the successor's, unknown before.
_SH_EXEC = 'cd -- "$1" || exit 2; shift; LISTEN_PID=$$; export LISTEN_PID; exec "$@"'


class Successor:
    """A spawned successor: its ready pipe, its log pipe, its exit."""

    def __init__(self, pid: int, ready_fd: int, log_fd: int) -> None:
        self.pid = pid
        self._event_loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[bool] = self._event_loop.create_future()
        self._exited: asyncio.Future[int] = self._event_loop.create_future()
        self._log_closed: asyncio.Future[None] = self._event_loop.create_future()
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
        self._partial = b""
        self._ready_fd, self._log_fd = ready_fd, log_fd
        for fd, callback in ((ready_fd, self._on_ready_pipe), (log_fd, self._on_log_pipe)):
            os.set_blocking(fd, False)
            self._event_loop.add_reader(fd, callback)
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(pid)
            self._event_loop.add_reader(self._pidfd, self._reap)
        except (AttributeError, OSError):  # no pidfd (not Linux, or before 5.3): poll
            self._poll = asyncio.ensure_future(self._poll_exit())

    @classmethod
    def spawn(cls, argv: list[str], sockets: list[tuple[str, socket.socket]],
              passed: Sequence[tuple[str, int]] = (), folder: str = ".") -> Successor:
        """`passed`: more descriptors for it, each announced in the named variable; `folder`:
        its working directory."""
        import fcntl  # POSIX only

        n = len(sockets)
        ready_r, ready_w = os.pipe()
        log_r, log_w = os.pipe()
        copies: list[int] = []
        try:
            # Copies numbered above every target, so that no dup2 below overwrites a source;
            # close-on-exec, so that only the dup2 targets reach the successor.
            sources = [sock.fileno() for _, sock in sockets] + [ready_w, 2]
            sources += [fd for _, fd in passed] + [log_w]
            copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, FIRST_FD + len(sources))
                      for fd in sources]
            *targets, log_copy = copies
            actions = [(os.POSIX_SPAWN_DUP2, fd, FIRST_FD + i) for i, fd in enumerate(targets)]
            actions.append((os.POSIX_SPAWN_DUP2, log_copy, 2))
            env = {key: value for key, value in os.environ.items() if key != "LISTEN_PID"}
            env.update({"LISTEN_FDS": str(n),
                        "LISTEN_FDNAMES": ":".join(name for name, _ in sockets),
                        READY_FD_ENV: str(FIRST_FD + n), LOG_FD_ENV: str(FIRST_FD + n + 1),
                        PREDECESSOR_ENV: str(os.getpid())})
            env.update({name: str(FIRST_FD + n + 2 + i) for i, (name, _) in enumerate(passed)})
            pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", _SH_EXEC, "graceful", folder,
                                              *argv],
                                 env, file_actions=actions, setpgroup=0,
                                 setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
        except BaseException:
            os.close(ready_r)
            os.close(log_r)
            raise
        finally:
            for fd in (*copies, ready_w, log_w):
                os.close(fd)
        return cls(pid, ready_r, log_r)

    async def wait_ready(self) -> bool:
        """True once it reported ready; False if its ready pipe closed or it exited first."""
        await asyncio.wait([self._ready, self._exited], return_when=asyncio.FIRST_COMPLETED)
        return self._ready.done() and self._ready.result()

    def kill(self) -> None:
        """End its process group at once."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def end(self) -> int:
        """SIGTERM its group, SIGKILL after END_GRACE_S; its exit code (negative: signal)."""
        if not self._exited.done():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), END_GRACE_S)
        self.kill()  # what is left of its group: children it started, or itself
        code = await self._exited
        with contextlib.suppress(TimeoutError):  # the rest of its log, for last_lines()
            await asyncio.wait_for(asyncio.shield(self._log_closed), 1.0)
        return code

    def leave_exit(self) -> None:
        """Stop watching for its exit, without reaping it: once it serves, its exit status
        is for whoever waits for it after us (graceful/waiter.py), not for our loop."""
        if self._pidfd is not None:
            self._close_reader(self._pidfd)
            self._pidfd = None
        elif hasattr(self, "_poll"):
            self._poll.cancel()

    def last_lines(self) -> list[str]:
        return list(self._tail)

    def _on_ready_pipe(self) -> None:
        if (data := _read_ready(self._ready_fd, 64)) is None:
            return
        if b"ready" in data or not data:
            self._close_reader(self._ready_fd)
            if not self._ready.done():
                self._ready.set_result(bool(data))

    def _on_log_pipe(self) -> None:
        if (chunk := _read_ready(self._log_fd, 65536)) is None:
            return
        data = self._partial + chunk
        lines, _, self._partial = data.rpartition(b"\n") if chunk else (data, b"", b"")
        if lines:
            _forward(lines + b"\n")
            self._tail.extend(line.decode(errors="replace")
                              for line in lines.splitlines() if line.strip())
        if not chunk:  # it moved its log to our stderr, or exited
            self._close_reader(self._log_fd)
            if not self._log_closed.done():
                self._log_closed.set_result(None)

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return
        if self._pidfd is not None:
            self._close_reader(self._pidfd)
            self._pidfd = None
        if not self._exited.done():
            self._exited.set_result(os.waitstatus_to_exitcode(status))

    async def _poll_exit(self) -> None:
        delay = 0.001
        while not self._exited.done():
            self._reap()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _close_reader(self, fd: int) -> None:
        self._event_loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)


def _forward(data: bytes) -> None:
    """The successor's log lines, whole, into ours (a write error drops them, as our own)."""
    with contextlib.suppress(OSError):
        os.write(2, data)


def _read_ready(fd: int, size: int) -> bytes | None:
    """What a readable pipe holds: None when nothing is there after all, b"" at its end (or
    when it broke: the successor is gone either way)."""
    try:
        return os.read(fd, size)
    except BlockingIOError:
        return None
    except OSError:
        return b""
