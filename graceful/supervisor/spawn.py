"""Start a worker: a fresh interpreter that is given exactly what it should have.

What reaches it: the listening sockets on descriptors 3, 4, ... announced as systemd does
(LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES; the early first worker has none yet:
early_worker.py), the descriptors in `passed` after them (each
announced in its variable), /dev/null on stdin, its own pipes on stdout and stderr, the
environment and folder it is given, a process group of its own (a terminal's Ctrl+C is the
supervisor's to forward, not the worker's to receive as well), the default action for the
signals Python ignores (and SIGCHLD, which a parent may have ignored), the stop, restart and
pause signals blocked until it has its handlers (graceful/cli/in_process.py: a Ctrl+C
forwarded in its first moment is then its clean stop, not a KeyboardInterrupt's traceback).
Nothing else: every
other descriptor of the supervisor is close-on-exec, and the copies made here are numbered
above the targets.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Mapping, Sequence

from graceful.supervisor.early import CAUGHT

FIRST_FD = 3  # SD_LISTEN_FDS_START
# sh enters the folder ($1: a path, so that a symlink is followed as it is at the spawn), and
# sets LISTEN_PID to its own pid, which exec keeps: the worker's, unknown before; and
# GRACEFUL_WORKER_PID, which the worker's children inherit (reaper.orphans_of).
_SH_EXEC = ('cd -- "$1" || exit 2; shift; LISTEN_PID=$$; GRACEFUL_WORKER_PID=$$; '
            'export LISTEN_PID GRACEFUL_WORKER_PID; exec "$@"')


class Spawned:
    """A started worker's pid and the supervisor's ends of its pipes; what was read from
    them before the supervisor's loop ran (graceful/supervisor/start.py). A plain class:
    the first worker is spawned before `dataclasses` is imported (early_worker.py)."""

    def __init__(self, pid: int, ready_fd: int, stdout_fd: int, stderr_fd: int) -> None:
        self.pid = pid
        self.ready_fd = ready_fd  # it writes "ready" once it serves (or is about to)
        self.stdout_fd, self.stderr_fd = stdout_fd, stderr_fd
        self.ready_seen = False  # "ready" read already
        # POSIX: ours of the socket that gives it the channels of a restart's hand-off of
        # idle connections (graceful/supervisor/handoff.py)
        self.handoff: socket.socket | None = None
        # its output read (and forwarded) already: the last lines, and an unfinished line's
        # start
        self.tail: list[str] = []
        self.partial: dict[int, bytes] = {}

    def __repr__(self) -> str:
        return f"Spawned(pid={self.pid})"


def spawn(argv: Sequence[str], env: Mapping[str, str], folder: str,
          sockets: Sequence[tuple[str, socket.socket]],
          passed: Sequence[tuple[str, int]] = (), ready_env: str = "") -> Spawned:
    """Start `argv` in `folder` with `env`; `ready_env` names the variable that tells it
    the descriptor of its ready pipe."""
    import fcntl  # POSIX only

    ready_r, ready_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ours = [ready_r, out_r, err_r]
    copies: list[int] = []
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        targets = [sock.fileno() for _, sock in sockets] + [fd for _, fd in passed] + [ready_w]
        sources = [*targets, null, out_w, err_w]
        above = FIRST_FD + len(sources)
        copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, above) for fd in sources]
        *target_copies, null_copy, out_copy, err_copy = copies
        actions = [(os.POSIX_SPAWN_DUP2, fd, FIRST_FD + i)
                   for i, fd in enumerate(target_copies)]
        actions += [(os.POSIX_SPAWN_DUP2, null_copy, 0), (os.POSIX_SPAWN_DUP2, out_copy, 1),
                    (os.POSIX_SPAWN_DUP2, err_copy, 2)]
        n = len(sockets)
        environment = {key: value for key, value in env.items()
                       if key not in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")}
        if sockets:
            environment.update({"LISTEN_FDS": str(n),
                                "LISTEN_FDNAMES": ":".join(name for name, _ in sockets)})
        environment.update({name: str(FIRST_FD + n + i) for i, (name, _) in enumerate(passed)})
        if ready_env:
            environment[ready_env] = str(FIRST_FD + n + len(passed))
        # descriptors the supervisor inherited open and inheritable (a deploy script's
        # flock, a stray one of its parent's) do not reach the worker: made close-on-exec
        # here (a close action in the spawn fails, EBADF, for one numbered above the
        # descriptor limit, and with it every spawn)
        for fd in _inheritable():
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
        pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", _SH_EXEC, "graceful", folder, *argv],
                             environment, file_actions=actions, setpgroup=0,
                             setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD),
                             setsigmask=CAUGHT)
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in (*copies, ready_w, out_w, err_w, null):
            os.close(fd)
    return Spawned(pid, ready_r, out_r, err_r)


def handoff_pair() -> tuple[socket.socket, socket.socket]:
    """The supervisor's end and a worker's of the socket the hand-off's channels go
    through (graceful/supervisor/handoff.py): messages, each kept whole."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)  # the supervisor's loop never waits on a worker
    return ours, theirs


def _inheritable() -> list[int]:
    """Our descriptors from 3 up that a spawned process would inherit."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return []
    found = []
    for fd in fds:
        if fd < FIRST_FD:
            continue
        try:
            if os.get_inheritable(fd):
                found.append(fd)
        except OSError:
            continue
    return found
