"""A worker's side of the link to its supervisor (graceful/supervisor/).

The supervisor gives a worker its configuration through a pipe, its listening sockets as
systemd does, the checkpoint's lock, and a ready pipe. The worker says "ready" once it
serves, and later, on the same pipe, what became of each pause and continue it was told
("paused", "resumed", "resume_failed ERROR"): a service reports PAUSED or RUNNING to the
SCM once every worker has said so. The new worker of a restart with a checkpoint says
"ready" before accepting (app built, on_startup run), then waits for "go" on its go pipe
(the old worker's final flush is done), takes that final state, accepts, and says
"serving"; the go pipe closed without "go" means the restart was abandoned, and it exits
without accepting. When the supervisor dies, the worker is sent SIGTERM by the kernel
(Linux) and drains: nothing serves on unsupervised.
SIGHUP to a worker means: stop, you are being replaced (kind "restart").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from graceful.bridge.stop import StopObserver
from graceful.config import Config
from graceful.errors import ConfigError, StartupError
from graceful.logs import get_logger
from graceful.supervisor.launch import config_from_json
from graceful.supervisor.worker_env import (
    CONFIG_FD_ENV,
    GO_FD_ENV,
    HANDOFF_FD_ENV,
    LOCK_FD_ENV,
    NUMBER_ENV,
    READY_FD_ENV,
    SETUP_FD_ENV,
    SUPERVISOR_ENV,
)

if TYPE_CHECKING:
    from graceful.checkpoint import Checkpointer
    from graceful.http.handoff import HandOff

log = get_logger()


class Takeover(Protocol):
    """What a worker's runtime asks of the link before it accepts."""

    lock_fd: int | None  # the checkpoint's lock, held by the supervisor

    async def before_accepting(self, checkpointer: Checkpointer | None,
                               state: dict[str, Any]) -> None:
        """Return when the worker may accept, its state the last one written."""

    def take_connections(self, factory: Callable[[], asyncio.Protocol],
                         accepting: asyncio.Event, stopping: Callable[[], bool]) -> None:
        """Serve the connections handed over by an old worker, once `accepting` is set;
        none once `stopping()`."""

    def hand_off(self) -> HandOff | None:
        """Where our idle connections go at a restart's stop (None: nowhere)."""


class WorkerLink(StopObserver):
    """What a worker was given by its supervisor, taken out of the environment (a process
    the application starts must not find it)."""

    def __init__(self, supervisor: int, number: int, ready_fd: int, config_fd: int | None,
                 lock_fd: int | None, go_fd: int | None) -> None:
        self.supervisor, self.number = supervisor, number
        self._ready_fd: int | None = ready_fd
        self._config_fd = config_fd
        self.lock_fd, self._go_fd = lock_fd, go_fd
        self.took_over = False  # the old worker's final state is ours (a restart)
        self._setup_fd: int | None = None
        self._config: Config | None = None
        # Windows: the listening sockets its supervisor shared (None: they come as systemd
        # passes them, on POSIX)
        self.sockets: list[tuple[str, socket.socket]] | None = None
        self.handoff: Channels | None = None  # POSIX: a restart's channels (see Channels)

    @classmethod
    def from_environment(cls) -> WorkerLink | None:
        supervisor = os.environ.pop(SUPERVISOR_ENV, "")
        number = os.environ.pop(NUMBER_ENV, "1")
        fds: dict[str, int] = {}
        for name in (READY_FD_ENV, CONFIG_FD_ENV, LOCK_FD_ENV, GO_FD_ENV, SETUP_FD_ENV,
                     HANDOFF_FD_ENV):
            value = os.environ.pop(name, None)
            if value is not None and value.isdigit():
                if sys.platform == "win32":  # a handle (windows_spawn.py): its descriptor
                    from graceful.supervisor.windows_spawn import open_inherited

                    with contextlib.suppress(OSError):
                        # kept after ready: a process the app starts must not hold it
                        os.set_handle_inheritable(int(value), False)
                        fds[name] = open_inherited(value, os.O_WRONLY)
                    continue
                fds[name] = int(value)
                with contextlib.suppress(OSError):
                    os.set_inheritable(int(value), False)
        if not supervisor.isdigit() or READY_FD_ENV not in fds:
            return None
        if sys.platform == "win32":  # the configuration comes first on stdin
            fds[CONFIG_FD_ENV] = -1
        link = cls(int(supervisor), int(number) if number.isdigit() else 1, fds[READY_FD_ENV],
                   fds.get(CONFIG_FD_ENV), fds.get(LOCK_FD_ENV), fds.get(GO_FD_ENV))
        link._setup_fd = fds.get(SETUP_FD_ENV)
        if (handoff := fds.get(HANDOFF_FD_ENV)) is not None:
            link.handoff = Channels(handoff)
        return link

    @property
    def early(self) -> bool:
        """Started before its supervisor read its command line: what it serves comes on its
        setup socket (graceful/supervisor/early_worker.py)."""
        return self._setup_fd is not None

    def setup(self) -> tuple[str, str | None]:
        """An early worker's wait for its setup: the target and app folder; its
        configuration, sockets and lock are then the link's."""
        from graceful.supervisor.early_worker import receive_setup

        fd, self._setup_fd = self._setup_fd, None
        if fd is None:
            raise ConfigError("this worker was not started early")
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):  # its sockets come here
            os.environ.pop(name, None)
        message = receive_setup(fd)
        if message is None:
            raise ConfigError(f"the supervisor (pid {self.supervisor}) did not need this worker")
        os.environ.update(message["environ"])  # before anything reads them (prometheus)
        self._config = Config(**message["config"])
        self.sockets = message["sockets"]
        self.lock_fd = message["lock_fd"]
        if message["handoff_fd"] is not None:
            self.handoff = Channels(message["handoff_fd"])
        return message["target"], message["app_dir"]

    def config(self) -> Config:
        if self._config is not None:  # an early worker's, from its setup
            return self._config
        if self._config_fd is None:
            raise ConfigError("a worker is started by graceful serve's supervisor")
        if self._config_fd == -1:  # Windows: the first line on stdin, with the sockets
            from graceful.supervisor.windows_spawn import take_sockets

            first = json.loads(sys.stdin.buffer.readline() or b"{}")
            self._config_fd = None
            if "config" not in first:
                raise ConfigError(f"the supervisor (pid {self.supervisor}) is gone")
            self.sockets = take_sockets(first.get("sockets") or [])
            return Config(**first["config"])
        chunks = []
        with os.fdopen(self._config_fd, "rb") as pipe:
            while chunk := pipe.read(65536):
                chunks.append(chunk)
        self._config_fd = None
        return config_from_json(b"".join(chunks).decode())

    def follow_supervisor(self) -> None:
        """Be sent SIGTERM when the supervisor dies (Linux), and stop at once if it already
        has: our parent is then another process."""
        if sys.platform.startswith("linux"):
            import ctypes
            import signal

            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PDEATHSIG
        if sys.platform == "win32":
            # there the end of stdin tells (graceful/bridge/supervised.py); and getppid()
            # needs PssCaptureSnapshot since 3.12, which Wine lacks (the process aborts)
            return
        if os.getppid() != self.supervisor:
            raise ConfigError(f"the supervisor (pid {self.supervisor}) is gone")

    async def before_accepting(self, checkpointer: Checkpointer | None,
                               state: dict[str, Any]) -> None:
        if self._go_fd is None or checkpointer is None:
            return  # no state to take over: accept with the others at once
        first = dict(checkpointer.restored.state) if checkpointer.restored else {}
        self._say(b"ready\n")  # built, on_startup run: the old worker may stop now
        started = time.perf_counter()
        go = await _read_to_end(self._go_fd)
        self._go_fd = None
        if b"go" not in go:  # closed without "go": the restart was abandoned
            raise StartupError("the restart that started this worker was abandoned before "
                               "the old worker handed its state over")
        self.took_over = True  # from here a stop begins once we serve: the queue is ours
        final = checkpointer.reload()
        final_state = final.state if final is not None else {}
        for key in first.keys() - final_state.keys():
            state.pop(key, None)
        state.update(final_state)
        log.info("restart.took_over", generation=checkpointer.generation,
                 keys=len(final_state), waited_s=round(time.perf_counter() - started, 4))

    def take_connections(self, factory: Callable[[], asyncio.Protocol],
                         accepting: asyncio.Event, stopping: Callable[[], bool]) -> None:
        """Serve with `factory` the idle connections an old worker hands us at a restart,
        once `accepting` is set (they wait in the kernel until then, their bytes too); none
        once `stopping()`: the old worker keeps them."""
        if self.handoff is not None:
            self.handoff.take(factory, accepting, stopping)

    def hand_off(self) -> HandOff | None:
        """A stop for a restart begins: where our idle connections go (None: nowhere, they
        are closed as at any stop)."""
        if self.handoff is None:
            return None
        from graceful.http.handoff import Sender

        channel = self.handoff.sending()
        return Sender(channel) if channel is not None else None

    def ready(self) -> None:
        """We serve (the runtime's READY): tell the supervisor, once. A worker that took
        over the state said "ready" before accepting; it now says "serving"."""
        self._say(b"serving\n" if self.took_over else b"ready\n")

    def paused(self) -> None:
        self._say(b"paused\n")

    def resumed(self) -> None:
        self._say(b"resumed\n")

    def resume_failed(self, error: str) -> None:
        self._say(f"resume_failed {' '.join(error.split())}\n".encode())

    def _say(self, message: bytes) -> None:
        if self._ready_fd is not None:
            with contextlib.suppress(OSError):  # the supervisor died: PDEATHSIG stops us
                os.write(self._ready_fd, message)


class Channels:
    """The socket on which the supervisor gives this worker a restart's channels
    (graceful/supervisor/handoff.py): "take" (we are a new worker: connections come on it)
    at any time once we are ready, "send" (we are an old one) just before our stop."""

    def __init__(self, fd: int) -> None:
        self._socket = socket.socket(fileno=fd)
        self._socket.setblocking(False)
        self._sending: socket.socket | None = None
        self._take: Callable[[socket.socket], None] | None = None

    def take(self, factory: Callable[[], asyncio.Protocol], accepting: asyncio.Event,
             stopping: Callable[[], bool]) -> None:
        from graceful.http.handoff import Receiver

        loop = asyncio.get_running_loop()
        self._take = lambda channel: Receiver(channel, factory, accepting,
                                              stopping).start(loop)
        loop.add_reader(self._socket.fileno(), self._read)

    def sending(self) -> socket.socket | None:
        """The channel of this restart's stop (read now: the stop's signal may come before
        the loop has seen the message that came just before it)."""
        self._read()
        channel, self._sending = self._sending, None
        return channel

    def _read(self) -> None:
        while True:
            try:
                what, fds, _, _ = socket.recv_fds(self._socket, 16, 1, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                what, fds = b"", []
            if not what:  # the supervisor is gone (PDEATHSIG stops us)
                with contextlib.suppress(ValueError, RuntimeError):
                    asyncio.get_running_loop().remove_reader(self._socket.fileno())
                return
            for fd in fds:
                channel = socket.socket(fileno=fd)
                if what == b"send":
                    if self._sending is not None:
                        self._sending.close()
                    self._sending = channel
                elif what == b"take" and self._take is not None:
                    self._take(channel)
                else:
                    channel.close()


async def _read_to_end(fd: int) -> bytes:
    """What the pipe `fd` holds once its other end is closed (its writer done, or dead)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    received = bytearray()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        received.extend(data)
        if not data and not done.done():
            done.set_result(bytes(received))

    os.set_blocking(fd, False)
    loop.add_reader(fd, readable)
    try:
        return await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)
