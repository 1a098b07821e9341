"""The supervisor: the one process a service manager sees, for the service's whole life.

    start    bind the listeners (or take systemd's, or --fd), take the checkpoint's lock,
             spawn --workers workers; all ready -> READY=1, the pid file, `supervisor.ready`.
             A worker that fails at the first start fails the start: the others are
             stopped and its exit code is ours.
    stop     (SIGTERM, SIGINT, SIGQUIT) forwarded to every worker, which drains as one
             process does; our own copies of the listeners close at once (new connections
             are refused once the workers have closed theirs); the exit code is the worst
             of the workers'. A repeated signal is forwarded too (the workers escalate).
    restart  (SIGHUP, `graceful restart` over the control socket, --reload) queued, one
             at a time: rolling.py.
    crash    a worker that exits while serving is logged (`worker.exited`, its code and
             last lines) and replaced after a backoff that grows while replacements die.
    pause    SIGUSR1 / SIGUSR2 forwarded to every worker; done once each has said so
             (pausing.py).

The supervisor never imports the application (nor aiohttp's server): it holds the
sockets, the pid, the signals, systemd's notifications and the exit code.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from graceful.config import Config
from graceful.errors import ExitCode, worst
from graceful.logs import get_logger
from graceful.supervisor import orders, output, platform
from graceful.supervisor.control import ControlServer
from graceful.supervisor.listening import Listening
from graceful.supervisor.rolling import Rolling
from graceful.supervisor.sources import PosixSignals, Sources
from graceful.supervisor.spawn import Spawned
from graceful.supervisor.workers import Workers, exit_code

log = get_logger()

KILL_MARGIN_S = 5.0  # past the stop budget, a worker that has not exited is killed


class Supervisor:
    def __init__(self, workers: Workers, listening: Listening, config: Config,
                 rolling: Rolling, notifier: Any = None, pid_file: Any = None,
                 sources: Sources | None = None, reload_folder: Path | None = None,
                 first: list[Spawned] | None = None) -> None:
        self._first = first  # the first workers, started before the loop (start.py)
        self._sources = sources or PosixSignals()
        self._reload_folder = reload_folder
        self._workers = workers
        self._listening = listening
        self._config = config
        self._rolling = rolling
        self._notifier = notifier
        self._pid_file = pid_file
        workers.pause_reports.notifier = notifier
        self._stop_requested: asyncio.Future[int] | None = None
        self._stop_source = ""
        self._stops = 0

    async def run(self) -> ExitCode:
        loop = asyncio.get_running_loop()
        self._stop_requested = loop.create_future()
        reaper = platform.new_reaper()
        reaper.install(loop)
        self._workers.reaper = reaper
        self._sources.install(loop, self)  # a stop at once; the others once workers serve
        control = ControlServer(self._on_control)
        try:
            await control.start()
        except OSError as err:  # `graceful restart` cannot reach us; SIGHUP still works
            log.warning("supervisor.control_unavailable", error=str(err))
        try:
            code = await self._serve()
        finally:
            await control.close()
            self._rolling.close()
            self._sources.uninstall()
            reaper.reap()
            reaper.uninstall()
            self._listening.close()
        return code

    async def _serve(self) -> ExitCode:
        assert self._stop_requested is not None
        started = time.perf_counter()
        first = await self._workers.start_generation(self._workers.count, self._stop_requested,
                                                     spawned=self._first)
        if first.failed is not None:
            if first.code != ExitCode.USAGE:  # a usage error is the worker's one line
                log.error("supervisor.start_failed", reason=first.reason,
                          worker_pid=first.failed.pid, last_lines=first.failed.last_lines())
            codes = await self._workers.stop_all(orders.STOP, self._kill_after())
            return worst(exit_code(first.code), *codes) if first.code else worst(*codes)
        if not self._stop_requested.done():
            self._workers.adopt(first.workers)
            self._rolling.ready()
            self._sources.workers_ready()
            if self._notifier is not None:
                self._notifier.ready()
            if self._pid_file is not None:
                self._pid_file.ready()
            log.info("supervisor.ready", pid=os.getpid(), workers=self._workers.pids(),
                     addresses=self._listening.addresses(),
                     took_s=round(time.perf_counter() - started, 4))
            watching = None
            if self._reload_folder is not None:
                from graceful.supervisor import reload

                watching = asyncio.ensure_future(reload.watch(self._reload_folder,
                                                              self._rolling.request))
            signum = await self._stop_requested
            if watching is not None:
                watching.cancel()
        else:
            # stopped with the rest; one whose start failed by itself (exit 2: an app that
            # cannot be imported) fails the service's start, as without the stop
            self._workers.adopt_extra(first.workers)
            signum = self._stop_requested.result()
        return await self._stop(signum)

    async def _stop(self, signum: int) -> ExitCode:
        name = self._stop_source or orders.name(signum)
        budget = self._kill_after()
        log.info("supervisor.stopping", source=name, workers=self._workers.pids(),
                 budget_s=round(budget, 3))
        if self._notifier is not None:
            self._notifier.workers_stopping(len(self._workers.pids()), budget)
        self._workers.stop_begins()
        # from now on, also while a restart's starting workers are ended first
        extender = asyncio.ensure_future(self._extend(budget))
        try:
            await self._rolling.abandon()  # workers still starting for a restart: ended
            unserved = self._workers.unserved()  # not a clean stop: those slots served nothing
            stopping = asyncio.ensure_future(self._workers.stop_all(signum, budget, name))
            # our copies of the listeners: the workers hold theirs until their queues are
            # served
            self._listening.close()
            codes = await stopping
        finally:
            extender.cancel()
        # a restart's old worker that cut work or lost state says so here too
        code = worst(*codes, *self._workers.old_exit_codes,
                     *([ExitCode.ERROR] if unserved else []))
        dropped = output.dropped_lines()  # a reader that stopped reading (output.py)
        log.info("supervisor.exit", code=int(code), worker_codes=[int(c) for c in codes],
                 **({"old_worker_codes": [int(c) for c in self._workers.old_exit_codes]}
                    if self._workers.old_exit_codes else {}),
                 **({"log_lines_dropped": dropped} if dropped else {}),
                 **({"unserved": unserved} if unserved else {}))
        if self._pid_file is not None:
            self._pid_file.stopped(code)
        if self._notifier is not None:
            self._notifier.stopped(code)
        return code

    async def _extend(self, budget: float) -> None:
        """Every second until cancelled, while the workers drain: EXTEND_TIMEOUT_USEC, so
        that systemd waits for them; a service's STOP_PENDING, its checkpoint rising."""
        if self._notifier is None:
            return
        end = time.monotonic() + budget
        while True:
            await asyncio.sleep(1.0)
            self._notifier.workers_stopping(self._workers.running(),
                                            max(0.0, end - time.monotonic()))

    def _pause_or_continue(self, signum: int) -> None:
        """Forwarded to every worker; kept, so that a restart or a replaced worker does not
        undo a pause (a new worker would accept again). The notifier hears "paused" or
        "resumed" once the workers have (pausing.py)."""
        self._workers.pause_or_continue(signum)
        self._rolling.paused = self._workers.paused

    def _kill_after(self) -> float:
        return self._config.stop_budget + KILL_MARGIN_S

    # -- the requests of the sources (sources.py), on the loop ----------------------------

    def stop(self, order: int, source: str) -> None:
        assert self._stop_requested is not None
        self._stops += 1
        if not self._stop_requested.done():
            self._stop_source = source
            self._stop_requested.set_result(order)
            return
        log.info("supervisor.stop_repeated", source=source, count=self._stops)
        self._workers.signal_all(order, source)  # each worker escalates its own stop

    def restart(self, source: str) -> None:
        self._rolling.request(source)

    def pause_or_continue(self, order: int) -> None:
        self._pause_or_continue(order)

    async def _on_control(self, message: dict[str, Any], reply: Any) -> None:
        command = message.get("command")
        if command == "hello":
            reply({"graceful": True, "pid": os.getpid(), "workers": self._workers.pids()})
        elif command == "restart":
            if self._stop_requested is not None and self._stop_requested.done():
                reply({"outcome": "failed", "reason": "the service is stopping"})
                return
            outcome = self._rolling.request("control", reply)
            reply(await outcome)
        else:
            reply({"error": f"unknown command {command!r}"})
