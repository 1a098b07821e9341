"""`--reload`, for development: a change under the app's folder restarts the process through
the hand-over of graceful/restart.py, so a request in flight during a save still completes,
and new code that does not import or start leaves the old process serving, the error shown
in `restart.failed`. Uses the `watchfiles` package (`pip install aiohttp-graceful[reload]`).
"""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from graceful.errors import ConfigError
from graceful.logs import get_logger
from graceful.stop import RestartRequest, StopObserver

log = get_logger()


def app_folder(source: object) -> Path:
    """The folder of the top-level package (or module) the app's factory was defined in;
    the current folder for an Application object (its class is aiohttp's)."""
    module = inspect.getmodule(source)
    if module is None or module.__name__.split(".")[0] == "aiohttp":
        return Path.cwd()
    file = getattr(sys.modules.get(module.__name__.split(".")[0]), "__file__", None)
    return Path(file).resolve().parent if file else Path.cwd()


class ReloadWatcher(StopObserver):
    """Watches `folder` from READY to the stop; each change (a burst of saves is one) asks
    `restart` (a thread-safe callable) for a restart."""

    def __init__(self, folder: Path, restart: Callable[[RestartRequest], None]) -> None:
        try:
            import watchfiles
        except ImportError:
            raise ConfigError("--reload needs the watchfiles package: "
                              "pip install 'aiohttp-graceful[reload]'") from None
        self._watchfiles = watchfiles
        self.folder, self._restart = folder, restart
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ready(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="graceful-reload",
                                            daemon=True)
            self._thread.start()
            log.info("reload.watching", folder=str(self.folder))

    def phase(self, name: str, time_left_s: float) -> None:
        self._stop.set()  # stopping (or handed over): the successor watches now

    def stopped(self, exit_code: int) -> None:
        self._stop.set()

    def _watch(self) -> None:
        for changes in self._watchfiles.watch(self.folder, stop_event=self._stop,
                                              raise_interrupt=False):
            if self._stop.is_set():
                return
            files = sorted({str(Path(path).relative_to(self.folder)) for _, path in changes})
            log.info("reload.changed", files=files[:10], count=len(files))
            self._restart(RestartRequest("RELOAD"))
