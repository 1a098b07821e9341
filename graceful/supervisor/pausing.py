"""A pause or a continue told to every worker is done once each of them has said so.

A worker's pause drains its requests first (graceful/lifecycle/pause.py): a service that
reported PAUSED when its workers were only told would say "paused" while they still serve
for up to --drain-timeout. Each worker says on its ready pipe what became of the order
(graceful/lifecycle/worker_link.py); the supervisor's notifier (a service's SCM reports)
hears "paused" once the last of the workers told has paused, and for a continue "resumed",
or "resume failed" if one of them could not accept again (it stays paused; a later
continue retries). A worker that exits meanwhile is not waited for. A continue during a
pause's drain replaces the pause: the workers answer the continue.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from graceful.logs import get_logger
from graceful.supervisor import orders

log = get_logger()


class PauseReports:
    def __init__(self) -> None:
        self.notifier: Any = None
        self._awaited = ""  # "paused" or "resumed"; "" when nothing is awaited
        self._waiting: set[int] = set()
        self._failed: dict[int, str] = {}
        self._since = 0.0

    def told(self, order: int, pids: Iterable[int]) -> None:
        """Workers `pids` were told `order` (orders.PAUSE or orders.CONTINUE)."""
        self._awaited = "paused" if order == orders.PAUSE else "resumed"
        self._waiting = set(pids)
        self._failed = {}
        self._since = time.perf_counter()
        self._settle()

    def heard(self, pid: int, said: str) -> None:
        """Worker `pid` said `said` on its ready pipe."""
        word, _, detail = said.partition(" ")
        if pid not in self._waiting:
            return
        if word == "resume_failed" and self._awaited == "resumed":
            self._failed[pid] = detail
        elif word != self._awaited:
            return
        self._waiting.discard(pid)
        self._settle()

    def gone(self, pid: int) -> None:
        if pid in self._waiting:
            self._waiting.discard(pid)
            self._settle()

    def _settle(self) -> None:
        if not self._awaited or self._waiting:
            return
        awaited, self._awaited = self._awaited, ""
        took_s = round(time.perf_counter() - self._since, 4)
        if awaited == "paused":
            log.info("supervisor.paused", took_s=took_s)
            self._tell("paused")
        elif self._failed:
            log.error("supervisor.resume_failed", workers=sorted(self._failed),
                      error=next(iter(self._failed.values())), took_s=took_s)
            self._tell("resume_failed", next(iter(self._failed.values())))
        else:
            log.info("supervisor.resumed", took_s=took_s)
            self._tell("resumed")

    def _tell(self, method: str, *args: Any) -> None:
        if (call := getattr(self.notifier, method, None)) is not None:
            call(*args)
