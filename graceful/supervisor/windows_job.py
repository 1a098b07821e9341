"""A Windows worker and what it starts, in a Job object of their own.

POSIX ends what a worker left running through its process group (workers.end_leftovers).
Windows has no such group: a process the app started (a helper in on_startup) outlives its
worker, one more per restart. Each worker is put in a job before it is given its
configuration (windows_spawn.py), so before its app runs, and every process it starts is in
the job too. Once the worker has exited (its drain done), TerminateJobObject ends the rest.

Not JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE: a supervisor that dies (Task Manager) would then take
its workers down at once, where they are meant to drain (graceful/bridge/supervised.py).
Without pywin32 (the `windows` extra), or where the job cannot be made (an older Windows
that does not nest jobs, with the supervisor in one already), the worker runs without one,
as before, and `worker.no_job` says so.
"""

from __future__ import annotations

import contextlib
from typing import Any

from graceful.logs import get_logger

log = get_logger()

PROCESS_SET_QUOTA = 0x0100
PROCESS_TERMINATE = 0x0001


class WorkerJob:
    def __init__(self, job: Any, worker_pid: int) -> None:
        self._job, self._worker_pid = job, worker_pid

    @classmethod
    def around(cls, pid: int) -> WorkerJob | None:
        """A new job holding process `pid` (and, from now on, what it starts)."""
        try:
            import win32api
            import win32job

            job = win32job.CreateJobObject(None, "")
            process = win32api.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False, pid)
            try:
                win32job.AssignProcessToJobObject(job, process)
            finally:
                process.Close()
        except Exception as err:  # ImportError, pywintypes.error
            log.warning("worker.no_job", worker_pid=pid, error=str(err))
            return None
        return cls(job, pid)

    def processes(self) -> list[int]:
        """The processes still in the job, but the worker."""
        import win32job

        with contextlib.suppress(Exception):
            found = win32job.QueryInformationJobObject(
                self._job, win32job.JobObjectBasicProcessIdList)
            return [pid for pid in found if pid != self._worker_pid]
        return []

    def end(self) -> list[int]:
        """End every process in the job now; the ones that were left (not the worker)."""
        import win32job

        left = self.processes()
        with contextlib.suppress(Exception):
            win32job.TerminateJobObject(self._job, 1)
        with contextlib.suppress(Exception):
            self._job.Close()
        return left
