"""Restart in place: hand the listening sockets to a successor, stop once it serves.

    READY ── restart request (SIGHUP, `graceful restart`) ──▶ spawn the successor: the same
        command line and environment, the listening sockets on descriptors 3, 4, ...
        announced as systemd does (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), its own process
        group; its log comes through a pipe we forward line by line, keeping the last lines
    successor: import, build the app, on_startup, listen ── "ready" on the ready pipe; its
        log now goes straight to the stderr we share (it dup2s the descriptor we gave it)
    predecessor, on "ready": the normal stop (source RESTART): readiness 503, stop
        accepting, drain, hooks, checkpoint, exit. The kernel sockets never close: the
        successor holds them, so the queue both processes accept from is never reset.
    not ready within --restart-timeout, or its ready pipe closes (it exited): it is ended
        (SIGTERM to its group, SIGKILL after END_GRACE_S), `restart.failed` logs its exit
        code and last log lines, and we go on serving as if nothing happened.
    a stop while a successor is starting: the successor's group is killed at once (it has
        served nothing), and our stop proceeds as usual. The first stop signal after the
        hand-over goes to the successor (stopping the service stops both, each cleanly).

Without a checkpoint, from "ready" to our exit both processes accept from the same
sockets, which is what keeps every connection answered. With one, the state must go from one
process to the other whole: the successor adopts our lock on PATH.lock (the inherited
descriptor: the lock is never free for a third process), says "ready" once its app is built
and on_startup has run, and accepts only after our final flush (we close its "go" pipe when
stopped; our death closes it too), re-reading the checkpoint first. Meanwhile connections
wait in the kernel queue (the pause: our drain plus the flush). A successor that fails still
fails before we stop, so the old process serves on.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from graceful.activation import FIRST_FD
from graceful.logs import get_logger
from graceful.stop import RestartRequest, StopObserver, StopRequest, StopSource

if TYPE_CHECKING:
    from graceful.checkpoint import Checkpointer
    from graceful.runtime import Runtime
    from graceful.systemd import SystemdNotifier

log = get_logger()

READY_FD_ENV = "GRACEFUL_RESTART_READY_FD"
LOG_FD_ENV = "GRACEFUL_RESTART_LOG_FD"
PREDECESSOR_ENV = "GRACEFUL_PREDECESSOR_PID"
LOCK_FD_ENV = "GRACEFUL_RESTART_LOCK_FD"  # the checkpoint's lock, adopted by the successor
GO_FD_ENV = "GRACEFUL_RESTART_GO_FD"  # closes once the predecessor's final flush is done
LOG_TAIL = 20  # lines of a failed successor's log repeated in restart.failed
END_GRACE_S = 3.0  # a failed successor gets this long to exit on SIGTERM before SIGKILL
# sh sets LISTEN_PID to its own pid, which exec keeps: the successor's, unknown before.
_SH_EXEC = 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"'


class Restarter(StopObserver):
    """Turns restart requests into a hand-over to a successor (one at a time)."""

    def __init__(self, argv: list[str], timeout: float) -> None:
        self._argv = argv
        self._timeout = timeout
        self._runtime: Runtime | None = None
        self._attempt: asyncio.Task[None] | None = None
        self._starting: Successor | None = None  # spawned, not yet ready
        self._handed_to: int | None = None  # the successor that serves, once ready
        self._go: int | None = None  # closed once our final state is written
        self.notifier: SystemdNotifier | None = None  # told of the restart (systemd.py)

    @classmethod
    def for_this_process(cls, timeout: float) -> Restarter:
        """Restarts run this interpreter again with the options it was started with."""
        return cls([sys.executable, *sys.orig_argv[1:]], timeout)

    def attach(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def request(self, request: RestartRequest) -> None:
        """On the loop thread: start a hand-over, unless one is running or we are not READY."""
        from graceful.runtime import Phase

        runtime = self._runtime
        assert runtime is not None, "attach() first"
        if self._attempt is not None and not self._attempt.done():
            log.info("restart.coalesced", source=request.source,
                     successor_pid=self._starting.pid if self._starting else None)
            return
        if runtime.phase is not Phase.READY:
            log.warning("restart.ignored", source=request.source, phase=str(runtime.phase))
            return
        self._attempt = asyncio.create_task(self._restart(request), name="graceful.restart")
        self._attempt.add_done_callback(self._crashed)

    def _crashed(self, attempt: asyncio.Task[None]) -> None:
        """A bug in the hand-over must not take the serving process down: logged, the
        successor (if any) ended, and we serve on."""
        if attempt.cancelled() or attempt.exception() is None:
            return
        err = attempt.exception()
        log.error("restart.failed", reason=f"the hand-over failed: {err!r}", exc_info=err)
        if self._starting is not None:
            self._starting.kill()
            self._starting = None

    def forward_stop(self, request: StopRequest) -> bool:
        """On the loop thread, before the runtime sees a stop signal. After the hand-over,
        the first one is meant for the service, so it goes to the successor, which stops
        the normal way, while we go on draining as we were (it does not force our drain).
        True when the request was forwarded (and so is not ours)."""
        if self._handed_to is None or not request.source.startswith("SIG"):
            return False
        pid, self._handed_to = self._handed_to, None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, getattr(signal, request.source))
        log.info("restart.stop_forwarded", source=request.source, successor_pid=pid)
        return True

    def stopped(self, exit_code: int) -> None:
        """Our final checkpoint flush is done (or failed): the successor may accept."""
        self._close_go(self._go)
        self._go = None

    @staticmethod
    def _close_go(fd: int | None) -> None:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def phase(self, name: str, time_left_s: float) -> None:
        """The stop began: a successor still starting is ended now."""
        if self._starting is not None:
            log.warning("restart.abandoned", successor_pid=self._starting.pid,
                        reason="stop requested while the successor was starting")
            self._starting.kill()
            self._starting = None
            if self._attempt is not None:
                self._attempt.cancel()

    async def _restart(self, request: RestartRequest) -> None:
        runtime = self._runtime
        assert runtime is not None
        started = time.perf_counter()
        log.info("restart.requested", source=request.source, timeout_s=self._timeout)
        if self.notifier is not None:
            self.notifier.reloading()
        sockets = [(f"graceful:{i}", listener.sock) for i, listener in
                   enumerate(runtime.listeners)]
        passed: list[tuple[str, int]] = []
        go_r = go_w = None
        checkpointer = runtime.checkpointer
        if checkpointer is not None and not checkpointer.closed:
            # the successor accepts only once our final state is written (module docstring)
            go_r, go_w = os.pipe()
            passed = [(LOCK_FD_ENV, checkpointer.lock_fd), (GO_FD_ENV, go_r)]
        try:
            successor = Successor.spawn(self._argv, sockets, passed)
        except Exception as err:  # OSError mostly: no /bin/sh, out of processes or fds
            self._close_go(go_w)
            log.error("restart.failed", reason=f"cannot start the successor: {err}",
                      exit_code=None, last_lines=[])
            write_status({"outcome": "failed", "reason": str(err)})
            if self.notifier is not None:
                self.notifier.reload_failed(str(err))
            return
        finally:
            if go_r is not None:
                os.close(go_r)
        self._go = go_w
        self._starting = successor
        log.info("restart.spawned", successor_pid=successor.pid)
        try:
            async with asyncio.timeout(self._timeout):
                ready = await successor.wait_ready()
        except TimeoutError:
            ready, reason = False, f"not ready within {self._timeout:g}s"
        else:
            reason = "exited before it was ready"
        if self._starting is not successor:  # a stop ended it meanwhile
            return
        self._starting = None
        took = round(time.perf_counter() - started, 4)
        if ready:
            log.info("restart.ready", successor_pid=successor.pid, took_s=took)
            write_status({"outcome": "ready", "successor_pid": successor.pid})
            self._handed_to = successor.pid
            if self.notifier is not None:
                self.notifier.handed_over(successor.pid)
            runtime.request_stop(StopRequest(StopSource.RESTART,
                                             f"handed over to pid {successor.pid}"))
            return
        self._close_go(self._go)
        self._go = None
        code = await successor.end()
        log.error("restart.failed", successor_pid=successor.pid, reason=reason,
                  exit_code=code, last_lines=successor.last_lines(), took_s=took)
        write_status({"outcome": "failed", "successor_pid": successor.pid, "reason": reason,
                      "exit_code": code})
        if self.notifier is not None:
            self.notifier.reload_failed(reason)


class Successor:
    """A spawned successor: its ready pipe, its log pipe, its exit."""

    def __init__(self, pid: int, ready_fd: int, log_fd: int) -> None:
        self.pid = pid
        self._loop = asyncio.get_running_loop()
        self._ready: asyncio.Future[bool] = self._loop.create_future()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._log_closed: asyncio.Future[None] = self._loop.create_future()
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
        self._partial = b""
        self._ready_fd, self._log_fd = ready_fd, log_fd
        for fd, callback in ((ready_fd, self._on_ready_pipe), (log_fd, self._on_log_pipe)):
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, callback)
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(pid)
            self._loop.add_reader(self._pidfd, self._reap)
        except (AttributeError, OSError):  # no pidfd (not Linux, or before 5.3): poll
            self._poll = asyncio.ensure_future(self._poll_exit())

    @classmethod
    def spawn(cls, argv: list[str], sockets: list[tuple[str, socket.socket]],
              passed: Sequence[tuple[str, int]] = ()) -> Successor:
        """`passed`: more descriptors for it, each announced in the named variable."""
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
            pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", _SH_EXEC, "graceful", *argv],
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

    def last_lines(self) -> list[str]:
        return list(self._tail)

    def _on_ready_pipe(self) -> None:
        try:
            data = os.read(self._ready_fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if b"ready" in data or not data:
            self._close_reader(self._ready_fd)
            if not self._ready.done():
                self._ready.set_result(bool(data))

    def _on_log_pipe(self) -> None:
        try:
            chunk = os.read(self._log_fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
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
        self._loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            os.close(fd)


def _forward(data: bytes) -> None:
    """The successor's log lines, whole, into ours (a write error drops them, as our own)."""
    with contextlib.suppress(OSError):
        os.write(2, data)


class Takeover(Protocol):
    """What the runtime of a restart's successor asks of the hand-over."""

    lock_fd: int | None  # the predecessor's checkpoint lock, to adopt

    async def before_accepting(self, checkpointer: Checkpointer | None,
                               state: dict[str, Any]) -> None:
        """Return when the successor may accept, its state the predecessor's final one."""


class SuccessorReport(StopObserver):
    """In a successor: once serving, move the log to the shared stderr and say "ready".

    With a checkpoint, "ready" is said before accepting (app built, on_startup run); then it
    waits for the predecessor's final flush, takes that state (keys the predecessor removed
    are removed, the others replaced in place: handlers hold the same dict), and accepts.
    Connections meanwhile wait in the kernel's queue: that wait is the pause of the design,
    logged as waited_s in `restart.took_over`."""

    def __init__(self, ready_fd: int, log_fd: int | None, lock_fd: int | None = None,
                 go_fd: int | None = None) -> None:
        self._ready_fd: int | None = ready_fd
        self._log_fd, self.lock_fd, self._go_fd = log_fd, lock_fd, go_fd

    @classmethod
    def from_environment(cls) -> SuccessorReport | None:
        fds = {}
        for name in (READY_FD_ENV, LOG_FD_ENV, LOCK_FD_ENV, GO_FD_ENV):
            value = os.environ.pop(name, None)
            if value is not None and value.isdigit():
                fds[name] = int(value)
                with contextlib.suppress(OSError):  # not for the app's own subprocesses
                    os.set_inheritable(int(value), False)
        os.environ.pop(PREDECESSOR_ENV, None)
        if READY_FD_ENV not in fds:
            return None
        return cls(fds[READY_FD_ENV], fds.get(LOG_FD_ENV), fds.get(LOCK_FD_ENV),
                   fds.get(GO_FD_ENV))

    async def before_accepting(self, checkpointer: Checkpointer | None,
                               state: dict[str, Any]) -> None:
        if self._go_fd is None or checkpointer is None:
            return  # no checkpoint: both accept during the overlap
        first = dict(checkpointer.restored.state) if checkpointer.restored else {}
        self.ready()
        started = time.perf_counter()
        await _closed(self._go_fd)
        self._go_fd = None
        final = checkpointer.reload()
        final_state = final.state if final is not None else {}
        for key in first.keys() - final_state.keys():
            state.pop(key, None)
        state.update(final_state)
        log.info("restart.took_over", generation=checkpointer.generation,
                 keys=len(final_state), waited_s=round(time.perf_counter() - started, 4))

    def ready(self) -> None:
        if self._ready_fd is None:  # said already (before_accepting)
            return
        if self._log_fd is not None:
            with contextlib.suppress(OSError):
                sys.stderr.flush()
                os.dup2(self._log_fd, 2)
            with contextlib.suppress(OSError):
                os.close(self._log_fd)
            self._log_fd = None
        with contextlib.suppress(OSError):  # the predecessor died: we serve all the same
            os.write(self._ready_fd, b"ready\n")
        with contextlib.suppress(OSError):
            os.close(self._ready_fd)
        self._ready_fd = None


async def _closed(fd: int) -> None:
    """Until the other end of the pipe `fd` is closed (its writer done, or dead)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data and not done.done():
            done.set_result(None)

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


# -- the outcome, for `graceful restart --pid` -------------------------------------------

def status_path(pid: int) -> Path:
    """Where process `pid` records the outcome of its last restart."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"graceful-{os.getuid()}" / f"restart-{pid}.json"


def write_status(status: dict[str, Any]) -> None:
    path = status_path(os.getpid())
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        folder = os.lstat(path.parent)
        if not stat.S_ISDIR(folder.st_mode) or folder.st_uid != os.getuid():
            raise OSError(f"{path.parent} is not a folder of this user's")
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(status))
        os.replace(temporary, path)
    except OSError as err:  # `graceful restart` then says it cannot tell; we serve on
        log.warning("restart.status_not_written", path=str(path), error=str(err))
