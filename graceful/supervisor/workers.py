"""The workers behind the supervisor: the ones that serve, a set started together (the first
start, a restart), and what happens when one dies. How one is started: launch.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
from typing import Any

from graceful.errors import ExitCode
from graceful.logs import get_logger
from graceful.supervisor import orders, platform
from graceful.supervisor.launch import Launcher
from graceful.supervisor.pausing import PauseReports
from graceful.supervisor.spawn import Spawned
from graceful.supervisor.worker_process import WorkerProcess

log = get_logger()

BACKOFF_FIRST_S = 0.5  # a dead worker's replacement waits this, doubled at each death
BACKOFF_MAX_S = 30.0
STABLE_S = 10.0  # a replacement up this long resets its slot's backoff
LEFTOVERS_GRACE_S = 3.0  # what a worker left running gets this long after SIGTERM


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
        self.reaper: platform.Reaper | None = None
        self.serving: dict[int, WorkerProcess] = {}  # by slot number
        self._replacing: dict[int, asyncio.Task[None]] = {}
        self._deaths: dict[int, int] = {}  # slot -> replacements that died in a row
        self._stopping = False
        self.paused = False  # the supervisor's: a replacement is paused once ready
        self._extra: list[WorkerProcess] = []
        self._retiring: list[WorkerProcess] = []
        self.generation = 0
        self.old_exit_codes: list[ExitCode] = []  # restarts' old workers whose stop failed
        self.pause_reports = PauseReports()

    def pids(self) -> list[int]:
        return [worker.pid for worker in self.serving.values()]

    def running(self) -> int:
        """Workers not yet exited: serving, or stopping (a restart's old ones too)."""
        return sum(not worker.exited.done()
                   for worker in [*self.serving.values(), *self._extra, *self._retiring])

    def spawn(self, number: int, go_fd: int | None = None,
              spawned: Spawned | None = None) -> WorkerProcess:
        """Start worker `number` (or take `spawned`, started before the loop ran)."""
        worker = WorkerProcess(spawned or self.launcher.spawn(number, go_fd), number,
                               self.generation, gated=go_fd is not None,
                               output=self.launcher.output)
        assert self.reaper is not None
        self.reaper.watch(worker.pid, worker.exit_seen)
        worker.on_report = self.pause_reports.heard
        worker.exited.add_done_callback(lambda _: self.pause_reports.gone(worker.pid))
        if (metrics := self.launcher.metrics) is not None:
            worker.exited.add_done_callback(lambda _: metrics.worker_exited(worker.pid))
        worker.exited.add_done_callback(lambda _: asyncio.ensure_future(end_leftovers(worker)))
        # the first start's are details (`supervisor.ready` names the workers); later ones
        # (a restart, a replacement) are news
        (log.info if self.generation or number in self._deaths else log.debug)(
            "worker.started", worker=number, worker_pid=worker.pid, generation=self.generation)
        return worker

    async def start_generation(self, count: int, cancel: asyncio.Future[Any],
                               timeout: float | None = None, go_fd: int | None = None,
                               into: list[WorkerProcess] | None = None,
                               spawned: list[Spawned] | None = None,
                               one_at_a_time: bool = False) -> Generation:
        """Spawn `count` workers (appended to `into` as they start) and wait until all are
        ready, one fails, `cancel` is done or `timeout` passes (for each worker). A failure
        or a timeout ends all of them. `spawned`: the processes, already started (the first
        start). `one_at_a_time`: each starts once the one before is ready (a restart: the
        old workers serve meanwhile on the same cores, and one start at a time takes less
        from them than all at once)."""
        workers = into if into is not None else []
        numbers = list(range(1, count + 1))
        while numbers:
            batch = [numbers.pop(0)] if one_at_a_time else [*numbers]
            numbers = numbers if one_at_a_time else []
            try:
                for number in batch:
                    workers.append(self.spawn(number, go_fd, spawned[number - 1] if spawned
                                              else None))
            except OSError as err:
                await self.end(workers)
                return Generation([], None, f"cannot start a worker: {err}", ExitCode.ERROR)
            failed = await self._all_ready(workers, cancel, timeout)
            if cancel.done():
                return Generation(workers)
            if failed is not None:
                return failed
        for worker in workers:
            (log.info if worker.generation else log.debug)(
                "worker.ready", worker=worker.number, worker_pid=worker.pid,
                generation=worker.generation)
        return Generation(workers)

    async def _all_ready(self, workers: list[WorkerProcess], cancel: asyncio.Future[Any],
                         timeout: float | None) -> Generation | None:
        """None once every one of `workers` is ready (or `cancel` is done); else the
        failure, all of them ended."""
        pending: set[asyncio.Future[Any]] = {w.ready for w in workers if not w.ready.done()}
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for worker in workers:  # one may have failed before we looked
                        if worker.ready.done() and not worker.ready.result():
                            code = await worker.exited
                            await self.end(workers)
                            return Generation(workers, worker, "exited before it was ready "
                                              f"({said(code)})", code)
                    if not pending:
                        break
                    _, pending = await asyncio.wait(
                        {*pending, cancel}, return_when=asyncio.FIRST_COMPLETED)
                    pending.discard(cancel)
                    if cancel.done():
                        return None
        except TimeoutError:
            late = next(worker for worker in workers if not worker.ready.done())
            await self.end(workers)
            return Generation(workers, late, f"not ready within {timeout:g}s",
                              ExitCode.ERROR)
        return None

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

    def pause_or_continue(self, order: int) -> None:
        """Tell every worker that serves; the ones ready are heard (pausing.py)."""
        self.paused = order == orders.PAUSE
        self.pause_reports.told(order, [worker.pid for worker in self.serving.values()
                                        if worker.ready.done() and worker.ready.result()])
        self.signal_all(order)

    def signal_all(self, signum: int, source: str = "") -> None:
        """A repeated stop: every worker, also one draining for a restart, for which it is a
        second stop request too (a second Ctrl+C cancels)."""
        for worker in [*self.serving.values(), *self._extra, *self._retiring]:
            worker.signal(signum, source)

    def stop_begins(self) -> None:
        """The service stops: a worker that exits from now on is not replaced (one told by
        a repeated stop, a restart's new worker ended), and no replacement starts."""
        self._stopping = True
        for task in self._replacing.values():
            task.cancel()

    async def stop_all(self, signum: int, kill_after: float,
                       source: str = "") -> list[ExitCode]:
        """Stop every worker with the order `signum` (each drains); kill what is left after
        `kill_after` seconds. Their exit codes."""
        self.stop_begins()
        workers = [*self.serving.values(), *self._extra]
        for worker in workers:
            worker.stopping = True
            if not worker.exited.done():  # its pid may be another process's by now
                worker.signal(signum, source)
        workers += self._retiring
        codes = await self.wait_exits(workers, kill_after)
        # One that never said ready served nothing: a start the stop ended (0, or a signal
        # before it could catch one) is not the stop's to report; a start that failed by
        # itself (an app that cannot be imported: 2) is, as it would be without the stop.
        return [exit_code(code) for worker, code in zip(workers, codes, strict=True)
                if (worker.ready.done() and worker.ready.result()) or code > 0]

    async def wait_exits(self, workers: list[WorkerProcess], kill_after: float) -> list[int]:
        if not workers:
            return []
        _, late = await asyncio.wait([worker.exited for worker in workers], timeout=kill_after)
        for worker in workers:
            if not worker.exited.done():
                log.error("worker.killed", worker=worker.number, worker_pid=worker.pid,
                          reason=f"still running {kill_after:g}s after it was told to stop")
                worker.kill_group()
        if late:
            await asyncio.wait(late, timeout=5.0)
        return [worker.exited.result() if worker.exited.done() else -9 for worker in workers]

    async def end(self, workers: list[WorkerProcess]) -> None:
        """End workers that serve nothing yet: SIGTERM, then SIGKILL to their groups."""
        for worker in workers:
            worker.stopping = True
            worker.signal(orders.STOP)
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
        log.error("worker.exited", worker=worker.number, worker_pid=worker.pid, up_s=round(up_s, 3),
                  **describe_exit(code), last_lines=worker.last_lines(),
                  replaced_in_s=delay)
        self._replacing[worker.number] = asyncio.ensure_future(
            self._replace(worker.number, delay))

    def unserved(self) -> list[int]:
        """Slots without a worker that serves whose replacements died too (a crash loop, a
        broken deploy on disk); not one whose first replacement is still starting."""
        return [number for number in range(1, self.count + 1)
                if number not in self.serving and self._deaths.get(number, 0) >= 2]

    def refill(self) -> None:
        """A restart that failed: a slot it emptied (a dead worker's replacement cancelled
        for it) gets its replacement again, with the config in force."""
        for number in range(1, self.count + 1):
            if number not in self.serving and number not in self._replacing \
                    and not self._stopping:
                self._replacing[number] = asyncio.ensure_future(
                    self._replace(number, BACKOFF_FIRST_S))

    def cancel_replacements(self) -> None:
        """A restart replaces every slot: a replacement still waiting out its backoff would
        start beside the restart's worker, unseen by it (a second writer of the state)."""
        for task in self._replacing.values():
            task.cancel()
        self._replacing.clear()

    async def _replace(self, number: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if self._stopping or number in self.serving:
            self._replacing.pop(number, None)
            return
        if self.launcher.lock_fd is not None and self._retiring:
            # the state is the old worker's until its final flush: a replacement that
            # accepted before would start from an older state and lose what it wrote
            await asyncio.wait([worker.exited for worker in self._retiring])
            if self._stopping or number in self.serving:
                self._replacing.pop(number, None)
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
        # shielded: a stop cancels this task, and must not cancel the worker's own future
        if await asyncio.shield(worker.ready):
            log.info("worker.ready", worker=number, worker_pid=worker.pid, replaced=True,
                     generation=worker.generation)
            if self.paused:  # as the others are
                worker.signal(orders.PAUSE)
        self._replacing.pop(number, None)


async def end_leftovers(worker: WorkerProcess) -> None:
    """What a worker started and left running (a helper of its on_startup never stopped)
    ends with it: SIGTERM to its process group, SIGKILL after LEFTOVERS_GRACE_S. Otherwise
    every restart would leave one more behind, holding its files and memory. On Windows
    they are in the worker's Job object (windows_job.py), ended at once: no signal there
    asks a process to stop."""
    if platform.WINDOWS:
        from graceful.supervisor import windows_spawn

        if left := windows_spawn.end_leftovers(worker.pid):
            log.warning("worker.leftovers", worker=worker.number, worker_pid=worker.pid,
                        grace_s=0, processes=left)
        return
    from graceful.supervisor.reaper import orphans_of

    orphans = orphans_of(worker.pid)  # out of its group (setsid), left to us, their subreaper
    try:
        os.killpg(worker.pid, 0)
        group = True
    except (ProcessLookupError, PermissionError):
        group = False
    if not group and not orphans:
        return
    log.warning("worker.leftovers", worker=worker.number, worker_pid=worker.pid,
                grace_s=LEFTOVERS_GRACE_S, **({"orphans": orphans} if orphans else {}))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(worker.pid, orders.STOP)
        for pid in orphans:
            os.kill(pid, orders.STOP)
    await asyncio.sleep(LEFTOVERS_GRACE_S)
    worker.kill_group()
    for pid in set(orphans) & set(orphans_of(worker.pid)):  # the same ones, still ours
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def said(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
