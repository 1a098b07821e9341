"""`--pid-file`: the supervisor's pid, written once it serves, for `graceful restart
--pid-file` and init scripts. It never changes while the service runs (a restart replaces
the workers, not the supervisor); at the exit the file is removed while it names us."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from graceful.bridge.stop import StopObserver
from graceful.logs import get_logger


class PidFile(StopObserver):
    def __init__(self, path: Path) -> None:
        self.path = path

    def ready(self) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            temporary.write_text(f"{os.getpid()}\n")
            os.replace(temporary, self.path)
        except OSError as err:  # the pid file is a convenience: serve without it
            get_logger().warning("pidfile.not_written", path=str(self.path), error=str(err))

    def stopped(self, exit_code: int) -> None:
        with contextlib.suppress(OSError, ValueError):
            if int(self.path.read_text().split()[0]) == os.getpid():
                self.path.unlink()
