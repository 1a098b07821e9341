"""The workers behind the supervisor: how one is started, the ones that serve, and what
happens when one dies.

A worker is `python -m graceful worker MODULE:ATTR`: a fresh interpreter with the
supervisor's own environment (as the supervisor found it at its start: nothing an
application changed reaches a new worker), started in the folder $PWD names now (a deploy's
symlink switched since is followed), given the listening sockets, the checkpoint's lock,
the configuration (through a pipe: it holds the TLS key's password) and a ready pipe. The
worker's side is graceful/worker.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graceful.config import Config
from graceful.errors import ExitCode
from graceful.logs import get_logger
from graceful.supervisor.listening import Listening
from graceful.supervisor.metrics_folder import ENV as METRICS_FOLDER_ENV
from graceful.supervisor.metrics_folder import MetricsFolder
from graceful.supervisor.reaper import Reaper
from graceful.supervisor.spawn import spawn
from graceful.supervisor.worker_process import WorkerProcess

log = get_logger()

# What a worker finds in its environment (graceful/worker.py reads them).
SUPERVISOR_ENV = "GRACEFUL_SUPERVISOR_PID"
READY_FD_ENV = "GRACEFUL_WORKER_READY_FD"
CONFIG_FD_ENV = "GRACEFUL_WORKER_CONFIG_FD"
LOCK_FD_ENV = "GRACEFUL_WORKER_LOCK_FD"
GO_FD_ENV = "GRACEFUL_WORKER_GO_FD"
NUMBER_ENV = "GRACEFUL_WORKER_NUMBER"
# The supervisor's to use, not a worker's: systemd would take a worker's READY=1 for ours.
_NOT_FOR_WORKERS = ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "FDSTORE",
                    "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

BACKOFF_FIRST_S = 0.5  # a dead worker's replacement waits this, doubled at each death
BACKOFF_MAX_S = 30.0
STABLE_S = 10.0  # a replacement up this long resets its slot's backoff


def config_to_json(config: Config) -> str:
    fields = dataclasses.asdict(config)
    return json.dumps({key: (str(value) if isinstance(value, Path) else value)
                       for key, value in fields.items()})


def config_from_json(text: str) -> Config:
    return Config(**json.loads(text))


def exit_code(code: int) -> ExitCode:
    """A worker's exit code as the service's: a signal that ended it, or a code outside the
    table, is an unexpected error."""
    try:
        return ExitCode(code)
    except ValueError:
        return ExitCode.ERROR


def describe_exit(code: int) -> dict[str, Any]:
    if code < 0:
        with contextlib.suppress(ValueError):
            return {"exit_code": None, "signal": signal.Signals(-code).name}
        return {"exit_code": None, "signal": -code}
    return {"exit_code": code}


@dataclasses.dataclass
class Launcher:
    """How a worker is started; `config` is replaced by a restart's."""

    target: str
    app_dir: str | None
    config: Config
    environ: Mapping[str, str]
    listening: Listening
    # computed once, at the supervisor's start: a symlink's path, followed at each spawn
    folder: str = dataclasses.field(default_factory=lambda: start_folder())
    lock_fd: int | None = None
    metrics: MetricsFolder | None = None  # with --metrics-bind: the workers' metrics
    entry: list[str] = dataclasses.field(default_factory=lambda: entry_point())

    def spawn(self, number: int, generation: int, go_fd: int | None = None) -> WorkerProcess:
        argv = [*self.entry, "worker", self.target]
        if self.app_dir is not None:
            argv += ["--app-dir", self.app_dir]
        env = {key: value for key, value in self.environ.items() if key not in _NOT_FOR_WORKERS}
        env[SUPERVISOR_ENV] = str(os.getpid())
        env[NUMBER_ENV] = str(number)
        if self.metrics is not None:  # read by prometheus_client at its import in the worker
            env[METRICS_FOLDER_ENV] = self.metrics.path
        config_r, config_w = os.pipe()
        try:
            os.write(config_w, config_to_json(self.config).encode())
        finally:
            os.close(config_w)
        passed = [(CONFIG_FD_ENV, config_r)]
        if self.lock_fd is not None:
            passed.append((LOCK_FD_ENV, self.lock_fd))
        if go_fd is not None:
            passed.append((GO_FD_ENV, go_fd))
        try:
            spawned = spawn(argv, env, self.folder, self.listening.pairs(), passed,
                            READY_FD_ENV)
        finally:
            os.close(config_r)
        return WorkerProcess(spawned, number, generation)


@dataclasses.dataclass
class Generation:
    """The outcome of starting a set of workers together."""

    workers: list[WorkerProcess]
    failed: WorkerProcess | None = None
    reason: str = ""
    code: int = 0


class Workers:
    def __init__(self, launcher: Launcher, count: int) -> None:
        self.launcher = launcher
        self.count = count
        self.reaper: Reaper | None = None
        self.serving: dict[int, WorkerProcess] = {}  # by slot number
        self._replacing: dict[int, asyncio.Task[None]] = {}
        self._deaths: dict[int, int] = {}  # slot -> replacements that died in a row
        self._stopping = False
        self._extra: list[WorkerProcess] = []
        self._retiring: list[WorkerProcess] = []
        self.generation = 0

    def pids(self) -> list[int]:
        return [worker.pid for worker in self.serving.values()]

    def spawn(self, number: int, go_fd: int | None = None) -> WorkerProcess:
        worker = self.launcher.spawn(number, self.generation, go_fd)
        assert self.reaper is not None
        self.reaper.watch(worker.pid, worker.exit_seen)
        if (metrics := self.launcher.metrics) is not None:
            worker.exited.add_done_callback(lambda _: metrics.worker_exited(worker.pid))
        # the first start's are details (`supervisor.ready` names the workers); later ones
        # (a restart, a replacement) are news
        (log.info if self.generation or number in self._deaths else log.debug)(
            "worker.started", worker=number, pid=worker.pid, generation=self.generation)
        return worker

    async def start_generation(self, count: int, cancel: asyncio.Future[Any],
                               timeout: float | None = None, go_fd: int | None = None,
                               into: list[WorkerProcess] | None = None) -> Generation:
        """Spawn `count` workers (appended to `into` as they start) and wait until all are
        ready, one fails, `cancel` is done or `timeout` passes. A failure or a timeout ends
        all of them."""
        workers = into if into is not None else []
        try:
            for number in range(1, count + 1):
                workers.append(self.spawn(number, go_fd))
        except OSError as err:
            await self.end(workers)
            return Generation([], None, f"cannot start a worker: {err}", ExitCode.ERROR)
        pending: set[asyncio.Future[Any]] = {worker.ready for worker in workers}
        try:
            async with asyncio.timeout(timeout):
                while pending:
                    _, pending = await asyncio.wait(
                        {*pending, cancel}, return_when=asyncio.FIRST_COMPLETED)
                    pending.discard(cancel)
                    if cancel.done():
                        return Generation(workers)
                    for worker in workers:
                        if worker.ready.done() and not worker.ready.result():
                            code = await worker.exited
                            await self.end(workers)
                            return Generation(workers, worker, "exited before it was ready "
                                              f"({_said(code)})", code)
        except TimeoutError:
            late = next(worker for worker in workers if not worker.ready.done())
            await self.end(workers)
            return Generation(workers, late, f"not ready within {timeout:g}s",
                              ExitCode.ERROR)
        for worker in workers:
            (log.info if worker.generation else log.debug)(
                "worker.ready", worker=worker.number, pid=worker.pid,
                generation=worker.generation)
        return Generation(workers)

    def adopt(self, workers: list[WorkerProcess]) -> None:
        """These serve from now on; their unexpected exits are replaced."""
        for worker in workers:
            self.serving[worker.number] = worker
            worker.exited.add_done_callback(lambda _, w=worker: self._exited(w))

    def adopt_extra(self, workers: list[WorkerProcess]) -> None:
        """Workers beside the ones in their slots (the new ones of a restart cut short by a
        stop): stopped with them."""
        for worker in workers:
            self._extra.append(worker)

    def retire(self, worker: WorkerProcess) -> None:
        """Out of its slot, told to stop for a restart: a stop now waits for it too, without
        signalling it again (a second stop request would cut its drain short)."""
        if self.serving.get(worker.number) is worker:
            del self.serving[worker.number]
        worker.stopping = True
        self._retiring.append(worker)
        worker.exited.add_done_callback(lambda _: self._retiring.remove(worker))

    def signal_all(self, signum: int) -> None:
        for worker in [*self.serving.values(), *self._extra]:
            worker.signal(signum)

    async def stop_all(self, signum: int, kill_after: float) -> list[ExitCode]:
        """Stop every worker with `signum` (each drains); SIGKILL what is left after
        `kill_after` seconds. Their exit codes."""
        self._stopping = True
        for task in self._replacing.values():
            task.cancel()
        workers = [*self.serving.values(), *self._extra]
        for worker in workers:
            worker.stopping = True
            worker.signal(signum)
        workers += self._retiring
        codes = await self.wait_exits(workers, kill_after)
        # one that never said ready served nothing: how its start ended is not the stop's
        return [exit_code(code) for worker, code in zip(workers, codes, strict=True)
                if worker.ready.done() and worker.ready.result()]

    async def wait_exits(self, workers: list[WorkerProcess], kill_after: float) -> list[int]:
        if not workers:
            return []
        _, late = await asyncio.wait([worker.exited for worker in workers], timeout=kill_after)
        for worker in workers:
            if not worker.exited.done():
                log.error("worker.killed", worker=worker.number, pid=worker.pid,
                          reason=f"still running {kill_after:g}s after it was told to stop")
                worker.kill_group()
        if late:
            await asyncio.wait(late, timeout=5.0)
        return [worker.exited.result() if worker.exited.done() else -9 for worker in workers]

    async def end(self, workers: list[WorkerProcess]) -> None:
        """End workers that serve nothing yet: SIGTERM, then SIGKILL to their groups."""
        for worker in workers:
            worker.stopping = True
            worker.signal(signal.SIGTERM)
        await self.wait_exits(workers, 3.0)
        for worker in workers:
            worker.kill_group()  # what they started and left
            worker.close()

    def _exited(self, worker: WorkerProcess) -> None:
        code = worker.exited.result()
        if self.serving.get(worker.number) is not worker:
            return  # replaced or retired: its exit was expected
        del self.serving[worker.number]
        if worker.stopping or self._stopping:
            return
        loop = asyncio.get_running_loop()
        up_s = loop.time() - worker.started_at
        if up_s >= STABLE_S:
            self._deaths.pop(worker.number, None)
        deaths = self._deaths[worker.number] = self._deaths.get(worker.number, 0) + 1
        delay = min(BACKOFF_FIRST_S * 2 ** (deaths - 1), BACKOFF_MAX_S)
        log.error("worker.exited", worker=worker.number, pid=worker.pid, up_s=round(up_s, 3),
                  **describe_exit(code), last_lines=worker.last_lines(),
                  replaced_in_s=delay)
        self._replacing[worker.number] = asyncio.ensure_future(
            self._replace(worker.number, delay))

    async def _replace(self, number: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._stopping:
            return
        try:
            worker = self.spawn(number)
        except OSError as err:
            log.error("worker.start_failed", worker=number, error=str(err))
            self._deaths[number] = self._deaths.get(number, 0) + 1
            self._replacing[number] = asyncio.ensure_future(
                self._replace(number, min(delay * 2, BACKOFF_MAX_S)))
            return
        self.serving[number] = worker  # stopped with the others if a stop comes now
        worker.exited.add_done_callback(lambda _: self._exited(worker))
        if await worker.ready:
            log.info("worker.ready", worker=number, pid=worker.pid, replaced=True,
                     generation=worker.generation)
        self._replacing.pop(number, None)


def _said(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def start_folder() -> str:
    """Where workers start: $PWD when it names our working directory at our start, as a
    shell or systemd's WorkingDirectory= sets it, else that directory. $PWD may go through a
    symlink a deploy switches to the next release (`current -> releases/v2`): a worker
    started after the switch starts in the release the link names then (our own working
    directory is the release it named at our start: the kernel keeps the folder)."""
    here = os.getcwd()
    named = os.environ.get("PWD")
    with contextlib.suppress(OSError):
        if named and os.path.isabs(named) and os.path.samefile(named, here):
            return named
    return here


def entry_point() -> list[str]:
    """How this process was started, up to its command (`serve`): the interpreter, its
    options and the script or module (`graceful`, `-m graceful`, or a wrapper such as the
    pytest plugin's `-m graceful.testing.child`). A worker is started the same way."""
    import sys

    args = sys.argv[1:]
    orig = sys.orig_argv
    if args and orig[len(orig) - len(args):] == args:
        return [sys.executable, *orig[1:len(orig) - len(args)]]
    return [sys.executable, "-m", "graceful"]
