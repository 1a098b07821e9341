"""Restart in place: hand the listening sockets to a successor, stop once it serves.

    READY ── restart request (SIGHUP, `graceful restart`) ──▶ spawn the successor: the same
        command line and environment, the listening sockets on descriptors 3, 4, ...
        announced as systemd does (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), its own process
        group; its log comes through a pipe we forward line by line, keeping the last lines;
        the metrics socket (--metrics-bind) too, named graceful-metrics: it serves scrapes
        from it while we still do, until our stop has finished
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
import contextlib
import json
import os
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graceful.http.activation import METRICS_NAME
from graceful.http.listeners import keep_file
from graceful.logs import get_logger
from graceful.stop import RestartRequest, StopObserver, StopRequest, StopSource
from graceful.successor import Successor
from graceful.takeover import GO_FD_ENV, LOCK_FD_ENV

if TYPE_CHECKING:
    from graceful.runtime import Runtime
    from graceful.systemd import SystemdNotifier

log = get_logger()


class Restarter(StopObserver):
    """Turns restart requests into a hand-over to a successor (one at a time)."""

    def __init__(self, argv: list[str], timeout: float, folder: str = ".") -> None:
        self._argv = argv
        self._folder = folder
        self._timeout = timeout
        self._runtime: Runtime | None = None
        self._attempt: asyncio.Task[None] | None = None
        self._starting: Successor | None = None  # spawned, not yet ready
        self._handed_to: int | None = None  # the successor that serves, once ready
        self.handed_over_to: int | None = None  # the same, kept (the CLI's waiter follows it)
        self._go: int | None = None  # closed once our final state is written
        self.notifier: SystemdNotifier | None = None  # told of the restart (systemd.py)

    @classmethod
    def for_this_process(cls, timeout: float) -> Restarter:
        """Restarts run this interpreter again with the options it was started with, in the
        folder it was started in (start_folder)."""
        with contextlib.suppress(OSError):  # a status for our pid is an earlier process's
            status_path(os.getpid()).unlink(missing_ok=True)
        return cls([sys.executable, *sys.orig_argv[1:]], timeout, start_folder())

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
        sockets = [(listener.name, listener.sock) for listener in runtime.listeners]
        if (metrics := runtime.metrics_socket) is not None:  # served by both till we stop
            sockets.append((METRICS_NAME, metrics))
        passed: list[tuple[str, int]] = []
        go_r = go_w = None
        checkpointer = runtime.checkpointer
        if checkpointer is not None and not checkpointer.closed:
            # the successor accepts only once our final state is written (module docstring)
            go_r, go_w = os.pipe()
            passed = [(LOCK_FD_ENV, checkpointer.lock_fd), (GO_FD_ENV, go_r)]
        try:
            successor = Successor.spawn(self._argv, sockets, passed, self._folder)
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
            for listener in runtime.listeners:  # its socket files are the successor's now
                keep_file(listener.sock)
            write_status({"outcome": "ready", "successor_pid": successor.pid})
            self._handed_to = self.handed_over_to = successor.pid
            successor.leave_exit()
            from graceful import waiter  # only a hand-over needs it

            if waiter.exit_ends_container():  # we shall wait for it (graceful/waiter.py)
                waiter.become_subreaper()
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


def start_folder() -> str:
    """Where a successor starts: $PWD when it names our working directory, as a shell or
    systemd's WorkingDirectory= sets it, else that directory. $PWD may go through a symlink
    a deploy switches to the next release (`current -> releases/v2`): the successor then
    starts in the release the link names at the restart. Our own working directory is the
    release it named at our start (the kernel keeps the folder, not the path)."""
    here = os.getcwd()
    named = os.environ.get("PWD")
    with contextlib.suppress(OSError):
        if named and os.path.isabs(named) and os.path.samefile(named, here):
            return named
    return here


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
