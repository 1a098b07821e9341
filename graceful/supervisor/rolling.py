"""A restart: new workers replace the old ones, the listening sockets never close.

    request  (SIGHUP, `graceful restart`, --reload) queued; one runs at a time, in order,
             each with its own outcome: the code on disk at the last request is what serves
             at the end. Requests before READY wait for it.
    config   --config and the command line are read again; a changed bind is bound now, a
             removed one closed once the old workers have stopped; an option that cannot
             change without a stop is kept and logged (`restart.option_unchanged`).
    spawn    the new workers, one at a time (each once the one before is ready: the old
             workers serve on the same cores meanwhile); each must be ready within
             --restart-timeout. One that fails: all the new ones are ended, the old ones
             serve on, the outcome is "failed" with the reason and the worker's last lines.
    replace  the old workers are told to stop for a restart (SIGHUP to a worker): they skip
             the pre-stop delay, drain, close websockets with 1012, flush. On POSIX each is
             first given a channel to a new worker (handoff.py): its keep-alive connections
             move there between two requests instead of being closed. With a checkpoint
             the new worker accepts only once the old one has exited (its final flush
             done): it re-reads the file first, so no answered update is lost.
    settle   the new workers must stay up SETTLE_S after the old ones have gone; one that
             dies is replaced like any worker, and this restart's outcome is "failed".
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import click

from graceful.config import Config
from graceful.errors import MEANINGS, GracefulError, worst
from graceful.logs import get_logger
from graceful.supervisor import handoff, orders, platform
from graceful.supervisor.listening import Change, Listening
from graceful.supervisor.worker_process import WorkerProcess
from graceful.supervisor.workers import Workers, describe_exit, exit_code, said

log = get_logger()

SETTLE_S = 2.0
# Options a restart cannot apply: the supervisor holds them (its pid file, the checkpoint's
# lock, the metrics listener, its own log).
UNCHANGED = {"pid_file": "--pid-file", "checkpoint": "--checkpoint",
             "metrics_bind": "--metrics-bind", "log_format": "--log-format",
             "log_level": "--log-level", "reload": "--reload"}

Reply = Callable[[dict[str, Any]], None]


@dataclasses.dataclass
class _Request:
    source: str
    outcome: asyncio.Future[dict[str, Any]]
    number: int = 0  # its `request` in restart.requested


class Rolling:
    def __init__(self, workers: Workers, listening: Listening,
                 reread: Callable[[], Config], notifier: Any = None) -> None:
        self._workers = workers
        self._listening = listening
        self._reread = reread
        self._notifier = notifier
        self._queue: asyncio.Queue[_Request] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._starting: list[WorkerProcess] = []  # new workers, not yet serving
        self._abandoned: asyncio.Future[Any] | None = None
        self._closed = False
        self._busy = False
        self._numbered = 0  # the requests so far: `request` in restart.requested
        self._handing_over: asyncio.Future[None] | None = None  # old flushing, new waiting
        self.paused = False  # SIGUSR1 came last: restarts wait for the continue

    def ready(self) -> None:
        """The first start is done: restarts may run."""
        self._ensure_queue()
        self._runner = asyncio.ensure_future(self._run())

    def request(self, source: str, reply: Reply | None = None) -> asyncio.Future[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[dict[str, Any]] = loop.create_future()
        if self._closed:
            outcome.set_result({"outcome": "failed", "reason": "the service is stopping"})
            return outcome
        queue = self._ensure_queue()
        ahead = queue.qsize() + (1 if self._starting or self._busy else 0)
        self._numbered += 1
        log.info("restart.requested", source=source, queued_behind=ahead,
                 request=self._numbered)
        if reply is not None:
            reply({"queued": ahead})
        queue.put_nowait(_Request(source, outcome, self._numbered))
        return outcome

    async def abandon(self) -> None:
        """A stop, before the workers are told: what a restart under way started is settled
        so that no connection the kernel queued is reset.

        New workers that accept nothing yet (starting, or waiting for the old worker's
        final flush) are ended first, while the old ones still serve: a socket copy they
        hold would otherwise keep queueing connections that nobody accepts. New workers that
        accept already stop with the others. A hand-over of the state under way (the old
        worker draining, the new one waiting) is let finish: the new worker then serves what
        queued meanwhile, and stops with the others. Queued restarts fail."""
        self._closed = True
        if self._handing_over is not None and not self._handing_over.done():
            log.info("restart.completing", reason="stop requested during the hand-over of "
                                                  "the state: the new worker takes it first")
            await asyncio.shield(self._handing_over)
        if self._abandoned is not None and not self._abandoned.done():
            self._abandoned.set_result(None)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._starting:
            starting = [w for w in self._starting if not w.exited.done()]
            gated = self._workers.launcher.lock_fd is not None
            accepting = [w for w in starting if not gated and w.ready.done()
                         and w.ready.result()]
            idle = [w for w in starting if w not in accepting]
            log.warning("restart.abandoned", pids=[w.pid for w in idle],
                        accepting=[w.pid for w in accepting],
                        reason="stop requested while new workers were starting")
            self._workers.adopt_extra(accepting)
            await self._workers.end(idle)
            self._starting = []
        self._fail_queued("the service is stopping")

    def close(self) -> None:
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
        self._fail_queued("the service stopped")

    def _ensure_queue(self) -> asyncio.Queue[_Request]:
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    def _fail_queued(self, reason: str) -> None:
        queue = self._queue
        while queue is not None and not queue.empty():
            request = queue.get_nowait()
            if not request.outcome.done():
                request.outcome.set_result({"outcome": "failed", "reason": reason})

    async def _run(self) -> None:
        queue = self._ensure_queue()
        while True:
            # every request queued by now is served by this restart: it starts after the
            # last of them, so it loads the code each of them asked for
            requests = [await queue.get()]
            while not queue.empty():
                requests.append(queue.get_nowait())
            self._busy = True
            started = time.perf_counter()
            try:
                outcome = await self._restart()
            except asyncio.CancelledError:
                for request in requests:
                    if not request.outcome.done():
                        request.outcome.set_result({"outcome": "failed",
                                                    "reason": "the service is stopping"})
                raise
            except Exception as err:  # a bug here must not take the service down
                log.exception("restart.crashed", error=repr(err))
                outcome = {"outcome": "failed", "reason": f"the restart failed: {err!r}"}
            finally:
                self._busy = False
            outcome["took_s"] = round(time.perf_counter() - started, 4)
            outcome["requests"] = len(requests)
            outcome["last_request"] = requests[-1].number
            outcome.setdefault("serving", self._workers.pids())
            if outcome["outcome"] == "ok":
                (log.warning if "warning" in outcome else log.info)("restart.done", **outcome)
            else:
                log.error("restart.failed", **outcome)
                self._workers.refill()
            if self._notifier is not None:
                self._notifier.reloaded(outcome.get("reason"))
            for request in requests:
                if not request.outcome.done():
                    request.outcome.set_result(outcome)

    async def _restart(self) -> dict[str, Any]:
        if self.paused:
            return {"outcome": "failed", "reason": "the service is paused (SIGUSR1): new "
                                                   "workers would accept; continue it "
                                                   "(SIGUSR2) first"}
        if self._notifier is not None:
            self._notifier.reloading()
        launcher = self._workers.launcher
        self._workers.cancel_replacements()  # every slot gets a new worker now
        old_config = launcher.config
        try:
            # into the folder $PWD named at our start, as it is now: after a deploy switched
            # a release symlink, a relative --config (and the paths in it) are the new
            # release's, and our own folder is not a release that may be deleted
            os.chdir(launcher.folder)
        except OSError as err:
            return {"outcome": "failed", "reason": f"cannot enter {launcher.folder}: "
                                                   f"{err.strerror or err}"}
        try:
            config = self._kept(old_config, self._reread())
            change = self._listening.update(config)
        except GracefulError as err:
            return {"outcome": "failed", "reason": str(err)}
        except (SystemExit, click.exceptions.Exit, click.ClickException) as err:
            return {"outcome": "failed", "reason": _said_by_click(err)}
        return await self._replace_workers(config, old_config, change)

    async def _replace_workers(self, config: Config, old_config: Config,
                               change: Change) -> dict[str, Any]:
        launcher = self._workers.launcher
        loop = asyncio.get_running_loop()
        self._abandoned = loop.create_future()
        go_r = go_w = None
        if launcher.lock_fd is not None:  # the new worker accepts after the old one's flush
            go_r, go_w = os.pipe()
        launcher.config = config
        self._workers.generation += 1
        count = config.workers
        self._starting = []
        try:
            generation = await self._workers.start_generation(
                count, self._abandoned, config.restart_timeout, go_r, into=self._starting,
                one_at_a_time=True)
        except BaseException:  # cancelled by a stop (or a bug): as a failed start
            if go_w is not None:
                os.close(go_w)
            launcher.config = old_config
            self._listening.undo(change)
            raise
        finally:
            if go_r is not None:
                os.close(go_r)
        if generation.failed is not None or self._closed:
            if go_w is not None:
                os.close(go_w)
            launcher.config = old_config
            self._listening.undo(change)
            self._starting = []
            failed = generation.failed
            return {"outcome": "failed", "reason": generation.reason or "stopping",
                    **({"worker_pid": failed.pid, **describe_exit(generation.code),
                        "last_lines": failed.last_lines()} if failed else {})}
        new = generation.workers
        self._starting = []
        old = list(self._workers.serving.values())
        for worker in old:
            self._workers.retire(worker)
        self._workers.count = count
        self._workers.adopt(new)
        if not platform.WINDOWS:  # their idle connections go to the new ones
            handoff.link(old, new)
        for worker in old:
            worker.signal(orders.RESTART)  # a worker stops for a restart on SIGHUP
        if go_w is not None:
            self._handing_over = loop.create_future()
        try:
            codes = await self._workers.wait_exits(old, config.stop_budget + 5.0)
            if go_w is not None:  # the new worker takes the state the old one left
                with contextlib.suppress(OSError):
                    os.write(go_w, b"go")
                os.close(go_w)
                go_w = None
                await asyncio.wait([w.serving for w in new], timeout=config.restart_timeout)
        finally:
            if go_w is not None:
                os.close(go_w)  # without "go": the new worker exits without accepting
            if self._handing_over is not None and not self._handing_over.done():
                self._handing_over.set_result(None)
        self._listening.close(change.closing)
        worst_old = worst(*(exit_code(code) for code in codes))
        outcome: dict[str, Any] = {"workers": [w.pid for w in new],
                                   "replaced": [w.pid for w in old]}
        if worst_old:
            # the new workers serve: the restart is done, and what the old ones' stop cut
            # is said with serve's own exit code (and counts in the service's exit code)
            self._workers.old_exit_codes.append(worst_old)
            outcome |= {"old_exit_code": int(worst_old),
                        "warning": f"an old worker's stop ended with exit code "
                                   f"{int(worst_old)} ({MEANINGS.get(worst_old, 'see its log')})"}
        died = await _settle(new, SETTLE_S)
        if died is not None:
            return {"outcome": "failed", **outcome,
                    "reason": f"new worker {died.pid} exited within {SETTLE_S:g}s of the "
                              f"restart ({said(died.exited.result())}); it is replaced",
                    "last_lines": died.last_lines()}
        return {"outcome": "ok", **outcome}

    def _kept(self, old: Config, new: Config) -> Config:
        kept = {}
        for name, flag in UNCHANGED.items():
            if getattr(old, name) != getattr(new, name):
                log.warning("restart.option_unchanged", option=flag,
                            kept=_text(getattr(old, name)), asked=_text(getattr(new, name)),
                            reason="it needs a stop and a start to change")
                kept[name] = getattr(old, name)
        return new.replace(**kept) if kept else new


def _said_by_click(err: BaseException) -> str:
    if isinstance(err, click.ClickException):
        return err.format_message()
    return f"the options could not be read again (exit {getattr(err, 'exit_code', err)}); " \
           "the reason is in the service's log"


async def _settle(new: list[WorkerProcess], settle_s: float) -> WorkerProcess | None:
    done, _ = await asyncio.wait([worker.exited for worker in new], timeout=settle_s)
    return next((worker for worker in new if worker.exited in done), None)


def _text(value: Any) -> Any:
    return str(value) if value is not None and not isinstance(value, bool | int | float) \
        else value
