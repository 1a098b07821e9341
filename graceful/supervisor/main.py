"""`graceful serve` on POSIX, once its first workers are starting (start.py): the rest of
the supervisor, and its loop until the service stops."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Callable
from typing import Any

from graceful import logs
from graceful.config import Config
from graceful.errors import ExitCode
from graceful.supervisor import output
from graceful.supervisor.early import EarlySignals
from graceful.supervisor.listening import Listening
from graceful.supervisor.rolling import Rolling
from graceful.supervisor.sources import PosixSignals, Sources
from graceful.supervisor.start import Started, absolute_paths
from graceful.supervisor.supervisor import Supervisor
from graceful.supervisor.workers import Workers

log = logs.get_logger()

OUTPUT_DRAIN_S = 2.0  # at the exit, for the log's last lines (a stalled reader: dropped)


def supervise(started: Started, reread: Callable[[], Config],
              early: EarlySignals | None = None, sources: Sources | None = None,
              notifier: Any = None) -> ExitCode:
    """Serve with the workers `started` began until a stop; the exit code. `reread` reads
    the options again for a restart (raises ConfigError); `early` holds the signals that
    came before the supervisor's loop; `sources`: where stop requests come from (POSIX
    signals by default; on Windows the console's events or the SCM's controls), and
    `notifier` who hears of the service's state (systemd by default; the SCM's reporter).
    What the supervisor could not open (the listeners, the checkpoint's lock) is
    `process.failed`, with the error's exit code."""
    try:
        return _supervise(started, reread, early, sources, notifier)
    finally:
        output.drain_all(OUTPUT_DRAIN_S)  # the log's last lines, written if they can be


def _supervise(started: Started, reread: Callable[[], Config], early: EarlySignals | None,
               sources: Sources | None, notifier: Any) -> ExitCode:
    if started.error is not None:
        log.error("process.failed", error=str(started.error))
        return started.error.exit_code
    launcher = started.launcher
    config, listening = launcher.config, launcher.listening
    reload_folder = None
    if config.reload:
        from graceful.supervisor import reload

        reload_folder = reload.app_folder(launcher.target, launcher.app_dir)
    if launcher.metrics is not None:
        launcher.metrics.log_opened()
    workers = Workers(launcher, config.workers)
    if notifier is None and sys.platform != "win32":
        notifier = _notifier(listening)
    pid_file = None
    if config.pid_file is not None:
        from graceful.host.pidfile import PidFile

        pid_file = PidFile(config.pid_file)

    def reread_absolute() -> Config:
        return absolute_paths(reread()).replace(log_format=config.log_format)

    rolling = Rolling(workers, listening, reread_absolute, notifier)
    supervisor = Supervisor(workers, listening, config, rolling, notifier, pid_file,
                            sources or PosixSignals(early), reload_folder,
                            first=started.spawned)
    try:
        return asyncio.run(supervisor.run())
    finally:
        if started.lock is not None:
            started.lock.release()  # type: ignore[attr-defined]
        if launcher.metrics is not None:
            launcher.metrics.close()


def _notifier(listening: Listening) -> object | None:
    from graceful.host.systemd import SystemdNotifier

    notifier = SystemdNotifier.from_environment()
    if notifier is not None:
        notifier.listeners = lambda: [types.SimpleNamespace(name=name, sock=sock)
                                      for name, sock in listening.pairs()]
    return notifier


def serve_args() -> list[str]:
    """This process's serve arguments, as a restart reads them again."""
    args = sys.argv[1:]
    return args[1:] if args[:1] == ["serve"] else args
