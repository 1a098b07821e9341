"""The first worker, started before the supervisor has read its command line (POSIX).

A worker's start is most of the service's: an interpreter, aiohttp, graceful's runtime.
The supervisor's own start before it can spawn one (its interpreter, click, the options,
the bind) came first, in series, and made the start 1.5 to 1.8 times bare aiohttp's. So
`graceful serve` spawns its first worker at once, from the entry point, with what a worker
gets that is known then (the environment and folder as found, the interpreter and its
options, its pipes); the worker imports its runtime meanwhile, then waits on its setup
socket. Once the supervisor has bound the listeners and taken the checkpoint's lock, it
sends the worker its target, configuration and descriptors there (SCM_RIGHTS), and the
worker goes on as one spawned with them would.

Nothing changes what a worker is given: when what the supervisor would spawn differs from
what this one was started with (an environment changed in between, another entry), it is
ended and a worker is spawned as usual. A start that never needs it (`--help`, an option
refused, a port in use) ends it too: at the supervisor's exit (entry.py), and the kernel
sends it SIGKILL if the supervisor dies first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence

from graceful.supervisor.spawn import Spawned, handoff_pair, spawn
from graceful.supervisor.worker_env import (
    READY_FD_ENV,
    SETUP_FD_ENV,
    entry_point,
    start_folder,
    worker_environment,
)

FDS_PER_MESSAGE = 253  # SCM_MAX_FD: the descriptors one message may carry on Linux


def in_batches(items: Sequence[object]) -> Iterator[list]:
    """`items` cut into lists of at most FDS_PER_MESSAGE: one message's descriptors each."""
    for first in range(0, len(items), FDS_PER_MESSAGE):
        yield list(items[first:first + FDS_PER_MESSAGE])
# not worth a spawn: the command ends without serving
_NOT_SERVING = ("--help", "-h", "--version")


class EarlyWorker:
    """The spawned worker and our end of its setup socket."""

    _started: EarlyWorker | None = None

    def __init__(self, spawned: Spawned, setup: socket.socket, argv: list[str],
                 env: dict[str, str], folder: str) -> None:
        self.spawned, self._setup = spawned, setup
        self.argv, self.env, self.folder = argv, env, folder

    @classmethod
    def start(cls, serve_args: Sequence[str]) -> None:
        """Spawn it, unless the command will not serve; a failure to spawn is the usual
        spawn's to report, later."""
        if cls._started is not None or any(arg in _NOT_SERVING for arg in serve_args):
            return
        argv = [*entry_point(), "worker"]
        env = worker_environment(os.environ, 1)
        folder = start_folder()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            spawned = spawn(argv, env, folder, [], [(SETUP_FD_ENV, theirs.fileno())],
                            ready_env=READY_FD_ENV)
        except OSError:
            ours.close()
            return
        finally:
            theirs.close()
        # Ours are opened before the command line is read: numbered low, they would be the
        # descriptor an `--fd N` names that was not passed (3, 4, ...) and be taken for it.
        spawned.ready_fd, spawned.stdout_fd, spawned.stderr_fd = (
            _out_of_the_way(fd) for fd in (spawned.ready_fd, spawned.stdout_fd,
                                           spawned.stderr_fd))
        setup = socket.socket(fileno=_out_of_the_way(ours.detach()))
        cls._started = cls(spawned, setup, argv, env, folder)

    @classmethod
    def take(cls) -> EarlyWorker | None:
        """The early worker, once: the caller hands it its setup or discards it."""
        early, cls._started = cls._started, None
        return early

    @classmethod
    def discard_unused(cls) -> None:
        """At the command's end: a worker nobody took is ended."""
        if (early := cls.take()) is not None:
            early.discard()

    def fits(self, argv: Sequence[str], env: Mapping[str, str], folder: str) -> bool:
        """It was started as a worker spawned now would be."""
        return (list(argv[:len(self.argv)]) == self.argv and dict(env) == self.env
                and folder == self.folder)

    def hand(self, target: str, app_dir: str | None, config_json: str,
             sockets: Sequence[tuple[str, socket.socket]], lock_fd: int | None,
             extra_env: Mapping[str, str]) -> Spawned:
        """Send it what it serves; the descriptors are copied into it by the kernel."""
        import json

        message = json.dumps({"target": target, "app_dir": app_dir,
                              "config": json.loads(config_json), "environ": dict(extra_env),
                              "names": [name for name, _ in sockets],
                              "lock": lock_fd is not None, "handoff": True}).encode()
        ours, theirs = handoff_pair()
        fds = [sock.fileno() for _, sock in sockets] + ([lock_fd] if lock_fd is not None else [])
        fds.append(theirs.fileno())
        try:
            # the message, then the descriptors in messages of their own, at most
            # FDS_PER_MESSAGE each (the kernel's limit), each with a space (JSON ignores it)
            self._setup.sendall(message)
            for batch in in_batches(fds):
                socket.send_fds(self._setup, [b" "], batch)
        except OSError:
            ours.close()
            self.discard()
            raise
        finally:
            theirs.close()
            self._setup.close()
        self.spawned.handoff = ours
        return self.spawned

    def discard(self) -> None:
        """End it: SIGKILL (it has served nothing), and reap it."""
        self._setup.close()
        for fd in (self.spawned.ready_fd, self.spawned.stdout_fd, self.spawned.stderr_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.kill(self.spawned.pid, signal.SIGKILL)
            os.waitpid(self.spawned.pid, 0)


def _out_of_the_way(fd: int) -> int:
    """`fd` moved up, above the numbers a parent passes (half the descriptor limit, at most
    256), close-on-exec."""
    import fcntl
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    floor = 256 if soft == resource.RLIM_INFINITY else max(3, min(256, soft // 2))
    try:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
    except OSError:  # no free number up there: it stays where it is
        return fd
    os.close(fd)
    return moved


def receive_setup(fd: int) -> dict | None:
    """A worker's side: its setup, with `sockets` and `lock_fd` made of the descriptors that
    came with it (close-on-exec); None when the supervisor closed the socket without one
    (it ended before serving)."""
    import json

    chunks: list[bytes] = []
    fds: list[int] = []
    with socket.socket(fileno=fd) as setup:
        setup.setblocking(True)
        while True:
            chunk, more, _, _ = socket.recv_fds(setup, 65536, FDS_PER_MESSAGE,
                                                socket.MSG_CMSG_CLOEXEC)
            if not chunk:
                break
            chunks.append(chunk)
            fds.extend(more)
    if not chunks:
        return None
    message = json.loads(b"".join(chunks))
    names: list[str] = message["names"]
    sockets = []
    for name, sock_fd in zip(names, fds, strict=False):
        sock = socket.socket(fileno=sock_fd)
        sock.setblocking(False)
        sockets.append((name, sock))
    message["sockets"] = sockets
    handoff = message.get("handoff", False)
    expected = len(names) + (1 if message["lock"] else 0) + (1 if handoff else 0)
    if len(fds) != expected:  # never silently fewer sockets than were bound
        for extra in fds[len(sockets):]:
            os.close(extra)
        for _, sock in sockets:
            sock.close()
        from graceful.errors import StartupError

        raise StartupError(f"the supervisor sent {expected} descriptors, {len(fds)} came")
    message["lock_fd"] = fds[len(names)] if message["lock"] else None
    message["handoff_fd"] = fds[-1] if handoff else None
    return message


if sys.platform == "win32":  # pragma: no cover - the entry point never starts one there
    raise ImportError("graceful.supervisor.early_worker is POSIX only")
