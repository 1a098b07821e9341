"""The folder where workers keep their metrics (--metrics-bind with workers): prometheus_client's
multiprocess mode, so that whichever worker answers a scrape answers for the service.

Each worker's prometheus_client writes its values to files there (PROMETHEUS_MULTIPROC_DIR,
set in every worker's environment), and a scrape reads and merges all of them
(`MultiProcessCollector`, graceful/metrics/registry.py). When a worker exits, its "live"
gauges are removed (`mark_process_dead`); its counters stay, so that what it counted is not
lost from the service's totals.

graceful's folder is private (mode 0700) and removed at the supervisor's exit. A folder the
user named in PROMETHEUS_MULTIPROC_DIR is used as it is, and kept: what is in it from an
earlier run is counted too (prometheus_client's own rule: clear it between runs).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping

from graceful.errors import ConfigError

ENV = "PROMETHEUS_MULTIPROC_DIR"


class MetricsFolder:
    def __init__(self, path: str, owned: bool) -> None:
        self.path = path
        self._owned = owned

    def log_opened(self) -> None:
        """`metrics.multiprocess`, once the supervisor's log is configured (the folder is
        made before: the first workers start with it)."""
        from graceful.logs import get_logger

        if self._owned:
            get_logger().info("metrics.multiprocess", folder=self.path, source="graceful")
        else:
            get_logger().info("metrics.multiprocess", folder=self.path, source=ENV,
                              note="the user's folder: kept at the exit, and what an earlier "
                                   "run left in it is counted")

    @classmethod
    def open(cls, environ: Mapping[str, str]) -> MetricsFolder:
        """The user's folder if PROMETHEUS_MULTIPROC_DIR names one, else a private one of
        ours. ConfigError if the user's is not a folder."""
        given = environ.get(ENV)
        if given:
            if not os.path.isdir(given):
                raise ConfigError(f"{ENV}={given!r} is not a folder (the metrics of the "
                                  "workers are kept there)")
            return cls(given, owned=False)
        return cls(tempfile.mkdtemp(prefix="graceful-metrics-"), owned=True)  # mode 0700

    def worker_exited(self, pid: int) -> None:
        # imported at the first exit, not at the start: the supervisor's start stays small
        from prometheus_client.multiprocess import mark_process_dead

        try:
            mark_process_dead(pid, self.path)
        except OSError as err:  # a scrape's worker reads on; the stale gauge is the cost
            from graceful.logs import get_logger

            get_logger().warning("metrics.mark_dead_failed", worker_pid=pid, error=str(err))

    def close(self) -> None:
        if self._owned:
            shutil.rmtree(self.path, ignore_errors=True)
