"""The `graceful` command (and `python -m graceful`): for `serve`, the stop, restart and
pause signals are held before anything else is imported. Until the supervisor catches
SIGHUP its default action ends the process: a deploy script's reload in the first moment of
a start killed it (the command line's imports take 50 to 200 ms on a loaded machine)."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["serve"] and sys.platform != "win32":
        from graceful.supervisor.early import EarlySignals

        EarlySignals.capture()
    from graceful.cli.main import main as command

    command()
