"""What an old process becomes after a restart when its exit would end its container.

When PID 1 of a PID namespace exits, the kernel kills every other process in it; a
container init (tini, docker-init, dumb-init, catatonit) exits when its child exits. Where
graceful is either one's process, the exit that ends a restart's hand-over would take the
successor down with it. So it stops as usual (drain, hooks, checkpoint, `process.exit`),
then `execv`s into this module: the same pid, a lean interpreter instead of the old heap.

    python -m graceful.waiter SERVING_PID STATUS_DIR LOG_FORMAT LOG_LEVEL

The waiter forwards the stop, restart and pause signals to the process that serves, reaps
every child (as PID 1, or as a subreaper, orphans come to it), and when the serving process
exits after handing over to a successor of its own (its restart status file says "ready"
and names a successor that is alive) follows that one. Otherwise it exits with the serving
process's exit code (128+N for a signal N), so `docker stop` ends the container with the
code of the last clean stop. A SIGHUP it forwards has its outcome, once the serving process
records it, recorded as the waiter's own: `graceful restart --pid 1` works in a container.

Only modules the interpreter has loaded at start, and json: this runs for the life of the
container.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time

from graceful.processes import alive

# (POSIX names: this module is imported on Windows too, by the CLI, and never run there)
FORWARDED = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT",
                                                     "SIGUSR1", "SIGUSR2")
                  if hasattr(signal, name))
# Parents that exit when their one child does: ending our pid ends the container.
CONTAINER_INITS = frozenset({"tini", "docker-init", "dumb-init", "catatonit"})
PR_SET_CHILD_SUBREAPER = 36

MIRROR_POLL_S = 0.05  # while a forwarded restart has no outcome yet
MIRROR_FOR_S = 3600.0  # a restart that records nothing (coalesced, ignored) is not waited on

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def exit_ends_container() -> bool:
    """Would our exit end every other process around us: PID 1 of a PID namespace, or the
    child of a container init that exits with its child."""
    if os.getpid() == 1:
        return True
    try:
        with open(f"/proc/{os.getppid()}/comm") as f:
            return f.read().strip() in CONTAINER_INITS
    except OSError:
        return False


def become_subreaper() -> bool:
    """Orphans of our descendants (a successor's successor) become our children, not the
    init's: the waiter can then follow and reap them. Linux only; the flag survives execve."""
    if not sys.platform.startswith("linux") or os.getpid() == 1:
        return os.getpid() == 1  # PID 1 gets the orphans anyway
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def argv(serving_pid: int, status_dir: str, log_format: str, log_level: str) -> list[str]:
    return [sys.executable, "-m", "graceful.waiter", str(serving_pid), status_dir,
            log_format, log_level]


class _Wake(Exception):
    pass


class Waiter:
    def __init__(self, serving: int, status_dir: str, as_json: bool, level: int) -> None:
        self.serving = serving
        self._status_dir, self._as_json, self._level = status_dir, as_json, level
        self._restarting_since: float | None = None  # a SIGHUP forwarded, no outcome yet
        self._blocked = False  # in a waitpid that only a child's exit ends

    def run(self) -> int:
        for signum in FORWARDED:
            signal.signal(signum, self._forward)
        # the old process blocked them before the exec: those that came meanwhile arrive now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        while True:
            pid, code = self._next_exit()
            if pid != self.serving:
                continue  # an orphan reaped
            successor = self._handed_to(pid)
            if successor is None:
                self.log("waiter.exit", code=code, pid=pid)
                return code
            self.log("waiter.following", pid=pid, code=code, successor_pid=successor)
            self.serving = successor

    def _forward(self, signum: int, frame: object) -> None:
        if signum == signal.SIGHUP:  # its outcome, once recorded, is ours too (see _mirror)
            with contextlib.suppress(OSError):
                os.unlink(self._status(self.serving))
            with contextlib.suppress(OSError):
                os.unlink(self._status(os.getpid()))
            self._restarting_since = time.monotonic()
        try:
            os.kill(self.serving, signum)
        except OSError as err:
            self.log("waiter.forward_failed", level="warning", signal=signal.Signals(signum).name,
                     pid=self.serving, error=str(err))
            return
        self.log("waiter.forwarded", signal=signal.Signals(signum).name, pid=self.serving)
        if signum == signal.SIGHUP and self._blocked:
            raise _Wake  # out of the blocking waitpid, which PEP 475 would otherwise retry

    def _next_exit(self) -> tuple[int, int]:
        """The next child that exits, and its exit code (128+N for signal N)."""
        while True:
            try:
                self._blocked = not self._restarting_since
                pid, status = os.waitpid(-1, 0 if self._blocked else os.WNOHANG)
            except _Wake:  # a SIGHUP forwarded: poll for its outcome from now on
                continue
            except ChildProcessError:  # the serving process is not ours (not reparented)
                while alive(self.serving):
                    time.sleep(0.1)
                return self.serving, 1
            finally:
                self._blocked = False
            if pid:
                break
            self._mirror(self.serving)
            time.sleep(MIRROR_POLL_S)
        code = os.waitstatus_to_exitcode(status)
        return pid, 128 - code if code < 0 else code

    def _handed_to(self, pid: int) -> int | None:
        """The successor `pid` handed over to, if its status says so and it is alive."""
        status = self._mirror(pid)
        with contextlib.suppress(OSError):
            os.unlink(self._status(pid))
        successor = status.get("successor_pid") if status else None
        if status is None or status.get("outcome") != "ready" or not isinstance(successor, int):
            return None
        return successor if alive(successor) else None

    def _mirror(self, pid: int) -> dict[str, object] | None:
        """The restart status `pid` recorded, recorded as ours as well once a SIGHUP we
        forwarded is waiting for it: `graceful restart --pid 1` in a container reads ours."""
        try:
            with open(self._status(pid)) as f:
                status = json.load(f)
        except (OSError, ValueError):
            status = None
        if not isinstance(status, dict):
            status = None
        since = self._restarting_since
        if since is not None and (status is not None or
                                  time.monotonic() - since > MIRROR_FOR_S):
            self._restarting_since = None
            if status is not None:
                ours = self._status(os.getpid())
                with contextlib.suppress(OSError):
                    with open(ours + ".tmp", "w") as f:
                        json.dump(status, f)
                    os.replace(ours + ".tmp", ours)
        return status

    def _status(self, pid: int) -> str:
        return os.path.join(self._status_dir, f"restart-{pid}.json")

    def log(self, event: str, level: str = "info", **fields: object) -> None:
        if _LEVELS[level] < self._level:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"
        if self._as_json:
            line = json.dumps({**fields, "event": event, "level": level, "timestamp": stamp})
        else:
            pairs = " ".join(f"{key}={value}" for key, value in fields.items())
            line = f"{stamp} [{level:<9}] {event:<30} {pairs}"
        with contextlib.suppress(OSError):
            os.write(2, (line + "\n").encode())


def main(args: list[str]) -> int:
    serving, status_dir, log_format, log_level = args
    waiter = Waiter(int(serving), status_dir, log_format == "json", _LEVELS.get(log_level, 20))
    return waiter.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
