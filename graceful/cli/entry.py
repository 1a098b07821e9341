"""The `graceful` command (and `python -m graceful`): for `serve`, the stop, restart and
pause signals are held before anything else is imported. Until the supervisor catches
SIGHUP its default action ends the process: a deploy script's reload in the first moment of
a start killed it (the command line's imports take 50 to 200 ms on a loaded machine). And
the first worker is spawned then, so that its start runs beside ours
(graceful/supervisor/early_worker.py)."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["worker"]:  # a supervisor's: no click (30 to 50 ms of its start)
        from graceful.cli.in_process import worker_main

        worker_main(sys.argv[2:])
        return
    if sys.argv[1:2] != ["serve"] or sys.platform == "win32":
        from graceful.cli.main import main as command

        command()
        return
    from graceful.supervisor.early import EarlySignals
    from graceful.supervisor.early_worker import EarlyWorker

    EarlySignals.capture()
    EarlyWorker.start(sys.argv[2:])  # it starts while we read the command line
    try:
        from graceful.cli.main import main as command

        command()
    finally:
        EarlyWorker.discard_unused()
