"""The folder where workers keep their metrics (--metrics-bind with workers): prometheus_client's
multiprocess mode, so that whichever worker answers a scrape answers for the service.

Each worker's prometheus_client writes its values to files there (PROMETHEUS_MULTIPROC_DIR,
set in every worker's environment), and a scrape reads and merges all of them
(`MultiProcessCollector`, graceful/metrics/registry.py). When a worker exits, its "live"
gauges are removed (`mark_process_dead`); what it counted stays in the service's totals:
its counters, histograms and summaries are added into one file per kind
(`counter_exited.db`, ...) and its own files removed, so that the folder does not grow by
two files with every replaced worker (nor a scrape's time with them). A scrape reads the
folder under a shared lock and the fold holds it exclusively: no page sees a worker's
values twice or not at all (POSIX; on Windows the files stay, as prometheus_client leaves
them).

graceful's folder is private (mode 0700) and removed at the supervisor's exit. A folder the
user named in PROMETHEUS_MULTIPROC_DIR is used as it is, and kept: what is in it from an
earlier run is counted too (prometheus_client's own rule: clear it between runs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping

from graceful.errors import ConfigError

ENV = "PROMETHEUS_MULTIPROC_DIR"
LOCK_NAME = ".graceful-fold.lock"  # not *.db: prometheus_client reads only those
# the kinds whose values add up over processes (gauges are kept per process, or live)
ADDED_UP = ("counter", "histogram", "summary")


FOLD_WAIT_S = 5.0  # for the scrapes under way; a worker stopped in one (SIGSTOP) skips the fold


@contextlib.contextmanager
def folder_lock(folder: str, exclusive: bool, wait_s: float | None = None) -> Iterator[None]:
    """The fold's lock on `folder`: shared for a scrape, exclusive for a fold (POSIX);
    TimeoutError when `wait_s` passed without it."""
    if sys.platform == "win32":
        yield
        return
    import fcntl

    fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        if wait_s is None:
            fcntl.flock(fd, mode)
        else:
            deadline = time.monotonic() + wait_s
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the metrics folder stayed locked {wait_s:g}s") \
                            from None
                    time.sleep(0.01)
        yield
    finally:
        os.close(fd)  # releases it


class MetricsFolder:
    def __init__(self, path: str, owned: bool) -> None:
        self.path = path
        self._owned = owned
        self._folds: list[int] = []  # exited workers whose counts are to be folded
        self._folds_lock = threading.Lock()
        self._folder_thread: threading.Thread | None = None

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
            self._failed(pid, err)
        if sys.platform != "win32":  # beside the loop: it waits for the scrapes under way
            with self._folds_lock:
                self._folds.append(pid)
                if self._folder_thread is None or not self._folder_thread.is_alive():
                    self._folder_thread = threading.Thread(
                        target=self._fold_all, name="graceful-metrics-fold", daemon=True)
                    self._folder_thread.start()

    def _fold_all(self) -> None:
        while True:
            with self._folds_lock:
                if not self._folds:
                    self._folder_thread = None
                    return
                pid = self._folds.pop(0)
            try:
                self._fold(pid)
            except (OSError, TimeoutError) as err:  # its files stay, counted once
                self._failed(pid, err)

    def wait_folded(self, timeout: float) -> None:
        """Until the folds asked for are done (a test's, and the stop's before the folder
        goes)."""
        thread = self._folder_thread
        if thread is not None:
            thread.join(timeout)

    @staticmethod
    def _failed(pid: int, err: BaseException) -> None:
        from graceful.logs import get_logger

        get_logger().warning("metrics.mark_dead_failed", worker_pid=pid, error=str(err))

    def _fold(self, pid: int) -> None:
        """Add what the exited worker `pid` counted into the `exited` file of each kind, and
        remove its own. Each such file is rewritten whole and renamed over the last, so a
        fold cut short leaves the last one as it was (and the worker's own file, counted
        once); a supervisor killed between the rename and the removal counts that worker
        twice until the folder is cleared (graceful's own is, at the next start)."""
        from prometheus_client.mmap_dict import MmapedDict

        with folder_lock(self.path, exclusive=True, wait_s=FOLD_WAIT_S):
            for kind in ADDED_UP:
                own = os.path.join(self.path, f"{kind}_{pid}.db")
                if not os.path.exists(own):
                    continue
                total = os.path.join(self.path, f"{kind}_exited.db")
                next_total = os.path.join(self.path, f".{kind}_exited.next")
                if os.path.exists(total):
                    shutil.copyfile(total, next_total)
                elif os.path.exists(next_total):
                    os.unlink(next_total)
                folded = MmapedDict(next_total)
                try:
                    for key, value, timestamp, _ in MmapedDict.read_all_values_from_file(own):
                        before, _ = folded.read_value(key)
                        folded.write_value(key, before + value, timestamp)
                finally:
                    folded.close()
                os.replace(next_total, total)
                os.unlink(own)

    def close(self) -> None:
        self.wait_folded(FOLD_WAIT_S + 1)
        if self._owned:
            shutil.rmtree(self.path, ignore_errors=True)
