"""The `graceful` command (and `python -m graceful`): for `serve`, the stop, restart and
pause signals are held before anything else is imported. Until the supervisor catches
SIGHUP its default action ends the process: a deploy script's reload in the first moment of
a start killed it (the command line's imports take 50 to 200 ms on a loaded machine). And
the first worker is spawned then, so that its start runs beside ours
(graceful/supervisor/early_worker.py)."""

from __future__ import annotations

import os
import sys


def main() -> None:
    if sys.argv[1:2] == ["serve"] and sys.platform != "win32":
        from graceful.supervisor.early import EarlySignals

        EarlySignals.capture()
    reserve_std_fds()  # before anything opens a descriptor (the early worker's pipes)
    if sys.argv[1:2] == ["worker"]:  # a supervisor's: no click (30 to 50 ms of its start)
        from graceful.cli.in_process import worker_main

        worker_main(sys.argv[2:])
        return
    if sys.argv[1:2] != ["serve"] or sys.platform == "win32":
        from graceful.cli.main import main as command

        command()
        return
    from graceful.supervisor.early_worker import EarlyWorker

    EarlyWorker.start(sys.argv[2:])  # it starts while we read the command line
    try:
        from graceful.cli.main import main as command

        command()
    finally:
        EarlyWorker.discard_unused()


def reserve_std_fds() -> None:
    """Put /dev/null on 0, 1 and 2 where they are closed (`>&-`, a daemon's parent).

    Otherwise the next descriptor opened takes their number: the event loop's epoll landed
    on 1 and libuv aborted the process (134) when closing it, believing it stdio; and
    sys.stdout is None, so the first print or flush fails.
    """
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if null != fd:  # open() takes the lowest free number, fd, unless a thread took it
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, "r" if fd == 0 else "w", buffering=1,  # noqa: SIM115
                                    closefd=False, errors="backslashreplace"))
