"""The supervisor's first steps, before its log and its loop: bind the listeners, take the
checkpoint's lock, start the first workers. The workers' start (an interpreter, aiohttp,
the app) is most of the service's; begun here, it runs beside the supervisor's own
imports (structlog, asyncio) instead of after them. Nothing here logs: an error is kept
for the supervisor to log once its log is configured.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import selectors
import sys
import time
from collections.abc import Callable
from pathlib import Path

from graceful.config import Config
from graceful.errors import ConfigError, GracefulError
from graceful.supervisor.launch import Launcher
from graceful.supervisor.listening import Listening
from graceful.supervisor.spawn import Spawned

# The longest the supervisor waits for its first workers before its own start: past it,
# its loop waits for them (and reports a start that hangs) as usual.
READY_WAIT_S = 30.0

@dataclasses.dataclass
class Started:
    launcher: Launcher
    spawned: list[Spawned]  # the first workers, numbered 1..N in order
    lock: object | None = None  # the checkpoint's CheckpointLock, held for good
    error: GracefulError | None = None  # what could not be opened: nothing was spawned


def start(target: str, app_dir: str | None, config: Config, *, entry: list[str] | None = None,
          output: Callable[[bytes, str, int], None] | None = None) -> Started:
    """`entry`: how a worker's interpreter starts (else as this process did); `output`:
    where the workers' lines go (else our stdout and stderr)."""
    config = absolute_paths(config)
    # The workers' log goes through our pipes: "auto" is decided here, for the terminal, as
    # graceful.logs decides it.
    as_json = config.log_format == "json" or (config.log_format == "auto"
                                               and not _isatty(sys.stderr))
    config = config.replace(log_format="json" if as_json else "console")
    environ = dict(os.environ)  # before anything changes it: what every worker starts with
    listening = Listening(config.backlog)
    launcher = Launcher(target, app_dir, config, environ, listening, output=output)
    if entry is not None:
        launcher.entry = entry
    lock = None
    try:
        if config.reload and importlib.util.find_spec("watchfiles") is None:
            # by its own name: `aiohttp-graceful[reload]` works only once graceful is on
            # PyPI, `.[reload]` only from a checkout; `pip install watchfiles` everywhere
            raise ConfigError("--reload needs the watchfiles package (the reload extra): "
                              "pip install watchfiles")
        listening.open(config)
        if config.checkpoint is not None:
            from graceful.checkpoint import CheckpointLock, fileformat, probe_folder

            # as a worker's own start would, before anything: refused now, not at the stop
            fileformat.refuse_symlink(config.checkpoint)
            probe_folder(config.checkpoint)
            lock = CheckpointLock.acquire(config.checkpoint)
            launcher.lock_fd = lock.fd
        if config.metrics_bind is not None:
            from graceful.supervisor.metrics_folder import MetricsFolder

            launcher.metrics = MetricsFolder.open(environ)
        spawned: list[Spawned] = []
        try:
            spawned.append(launcher.spawn_first())
            for number in range(2, config.workers + 1):
                spawned.append(launcher.spawn(number))
            from graceful.supervisor.control import listen_early

            listen_early()  # after the spawns: its import (asyncio) runs beside their start
        except OSError as err:
            for worker in spawned:  # none has served: ended at once, reaped by the loop
                os.kill(worker.pid, 9)
            raise GracefulError(f"cannot start a worker: {err}") from err
    except GracefulError as err:
        listening.close()
        if lock is not None:
            lock.release()
        if launcher.metrics is not None:
            launcher.metrics.close()
        return Started(launcher, [], None, err)
    return Started(launcher, spawned, lock)


def wait_ready(started: Started, stop_requested: Callable[[], bool],
               timeout: float = READY_WAIT_S) -> None:
    """Until the first workers are ready, one ends, a stop signal came or `timeout` passed:
    the supervisor's own start (structlog, its loop) then runs beside a worker that serves
    already, not beside its start on the same cores. What they write meanwhile is
    forwarded as it comes, whole lines, as the loop does later."""
    # imported here, after the spawn: it brings asyncio, which the spawn need not wait for
    from graceful.supervisor.worker_process import LOG_TAIL, forward_lines

    waiting = {worker.ready_fd: worker for worker in started.spawned}
    outputs = {fd: worker for worker in started.spawned
               for fd in (worker.stdout_fd, worker.stderr_fd)}
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        for fd in [*waiting, *outputs]:
            selector.register(fd, selectors.EVENT_READ)
        while waiting and not stop_requested() and time.monotonic() < deadline:
            for key, _ in selector.select(0.05):  # a signal's handler only records it
                fd = key.fd
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    data = b""
                if fd in waiting:
                    worker = waiting.pop(fd)
                    selector.unregister(fd)
                    if b"ready" in data:
                        worker.ready_seen = True  # the pipe stays open: later reports
                    else:
                        return  # it ended before it was ready: the loop reports it
                else:
                    worker = outputs[fd]
                    target = 1 if fd == worker.stdout_fd else 2
                    rest, lines = forward_lines(worker.partial.pop(fd, b""), data, target)
                    if rest:
                        worker.partial[fd] = rest
                    worker.tail = [*worker.tail, *lines][-LOG_TAIL:]
                    if not data:
                        selector.unregister(fd)


def absolute_paths(config: Config) -> Config:
    """Paths as the folder we started in names them: a worker may start in another one
    (a deploy's symlink switched)."""
    changes: dict[str, object] = {}
    for name in ("checkpoint", "pid_file", "ssl_certfile", "ssl_keyfile", "ssl_ca_certs"):
        value = getattr(config, name)
        if value is not None and not os.path.isabs(value):
            changes[name] = type(value)(os.path.abspath(value)) if isinstance(value, Path) \
                else os.path.abspath(value)
    return config.replace(**changes) if changes else config


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):
        return False
