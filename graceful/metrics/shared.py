"""A worker's live values (the phase, requests in flight, open connections, the checkpoint's
generation and age) as prometheus_client multiprocess gauges, so that whichever worker
answers a scrape reports every worker's.

In-process these values are read at the scrape (endpoint.py `_LiveValues`); here the
worker that answers cannot ask the others, so each worker writes its own to the shared
folder:
- when it changes phase or is told of a stop, a drain's progress or a flush (the runtime's
  notifications, as in-process);
- every PUBLISH_INTERVAL_S on the loop, for the counts that change with each request. Not at
  each request: that would put a locked file write on every request's path (in-process
  nothing runs per request) for values scraped every few seconds. The worker that answers
  a scrape writes its own first (read on its loop), so one worker's page is exact and the
  others' values are at most PUBLISH_INTERVAL_S old;
- nothing before it is ready: a worker still starting (the new one of a restart) is not in
  the page at all, rather than shown as "starting" beside the ones that serve.

How each is merged (`multiprocess_mode`; "live": the series of a worker that has exited are
removed by the supervisor, `mark_process_dead`):
    requests in flight, open connections   livesum: the service's counts
    phase                                   liveall: one series per worker, with its `pid`
                                            (during a restart the old worker drains while
                                            the new one is ready: both are true, a sum or a
                                            max of phases would say neither)
    checkpoint generation                   livemax: the last written (one writer at a time)
    checkpoint age                          livemin: since the last write, by any worker
"""

from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client import Gauge

PUBLISH_INTERVAL_S = 0.25
PHASES = ("starting", "ready", "draining", "stopped")


class SharedLive:
    """Created once the worker is ready; `publish` from the loop or a scrape's thread."""

    def __init__(self, names: dict[str, str]) -> None:
        self._names = names
        self._lock = threading.Lock()
        self._in_flight = Gauge("graceful_requests_in_flight",
                                names["graceful_requests_in_flight"], registry=None,
                                multiprocess_mode="livesum")
        self._connections = Gauge("graceful_open_connections",
                                  names["graceful_open_connections"], registry=None,
                                  multiprocess_mode="livesum")
        self._phase = Gauge("graceful_phase", names["graceful_phase"], ["phase"],
                            registry=None, multiprocess_mode="liveall")
        # made at the first value: a gauge starts at 0, which livemin would take as the age
        self._generation: Gauge | None = None
        self._age: Gauge | None = None

    def publish(self, values: dict[str, Any], generation: int | None,
                written_at: float | None) -> None:
        with self._lock:
            self._in_flight.set(values["in_flight"])
            self._connections.set(values["connections"])
            for name in PHASES:
                self._phase.labels(phase=name).set(1.0 if values["phase"] == name else 0.0)
            if generation is not None:
                if self._generation is None:
                    self._generation = self._gauge("graceful_checkpoint_generation", "livemax")
                self._generation.set(generation)
            if written_at is not None:
                age = max(time.time() - written_at, 0.0)
                if self._age is None:
                    self._age = self._gauge("graceful_checkpoint_age_seconds", "livemin")
                self._age.set(age)

    def _gauge(self, name: str, mode: Any) -> Gauge:
        return Gauge(name, self._names[name], registry=None, multiprocess_mode=mode)
