"""`graceful serve` on POSIX: build the supervisor from the options and run it."""

from __future__ import annotations

import asyncio
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path

from graceful import logs
from graceful.config import Config
from graceful.errors import ExitCode, GracefulError
from graceful.supervisor.early import EarlySignals
from graceful.supervisor.listening import Listening
from graceful.supervisor.rolling import Rolling
from graceful.supervisor.supervisor import Supervisor
from graceful.supervisor.workers import Launcher, Workers

log = logs.get_logger()


def supervise(target: str, app_dir: str | None, config: Config,
              reread: Callable[[], Config], early: EarlySignals | None = None) -> ExitCode:
    """Serve `target` with `config.workers` workers until a stop; the exit code.
    `reread` reads the options again for a restart (raises ConfigError); `early` holds the
    signals that came before the supervisor's loop. What the supervisor itself opens (the
    listeners, the checkpoint's lock, --reload's watcher) and cannot is `process.failed`,
    with the error's exit code."""
    config = absolute_paths(config)
    # The workers' log goes through our pipes: "auto" is decided here, for the terminal.
    config = config.replace(log_format="json" if logs.writes_json() else "console")
    environ = dict(os.environ)  # before anything changes it: what every worker starts with
    listening = Listening(config.backlog)
    lock = None
    reload_folder = None
    metrics = None
    try:
        if config.reload:
            from graceful import reload

            reload.watcher()  # installed, or a configuration error now
            reload_folder = reload.app_folder(target, app_dir)
        listening.open(config)
        if config.checkpoint is not None:
            from graceful.checkpoint import CheckpointLock, fileformat, probe_folder

            # as a worker's own start would, before anything: refused now, not at the stop
            fileformat.refuse_symlink(config.checkpoint)
            probe_folder(config.checkpoint)
            lock = CheckpointLock.acquire(config.checkpoint)
        if config.metrics_bind is not None:
            from graceful.supervisor.metrics_folder import MetricsFolder

            metrics = MetricsFolder.open(environ)
    except GracefulError as err:
        listening.close()
        if lock is not None:
            lock.release()
        log.error("process.failed", error=str(err))
        return err.exit_code
    launcher = Launcher(target, app_dir, config, environ, listening,
                        lock_fd=lock.fd if lock is not None else None, metrics=metrics)
    workers = Workers(launcher, config.workers)
    notifier = _notifier(listening)
    pid_file = None
    if config.pid_file is not None:
        from graceful.pidfile import PidFile

        pid_file = PidFile(config.pid_file)

    def reread_absolute() -> Config:
        return absolute_paths(reread()).replace(log_format=config.log_format)

    rolling = Rolling(workers, listening, reread_absolute, notifier)
    supervisor = Supervisor(workers, listening, config, rolling, notifier, pid_file, early,
                            reload_folder)
    try:
        return asyncio.run(supervisor.run())
    finally:
        if lock is not None:
            lock.release()
        if metrics is not None:
            metrics.close()


def absolute_paths(config: Config) -> Config:
    """Paths as the folder we started in names them: a worker may start in another one
    (a deploy's symlink switched)."""
    changes: dict[str, object] = {}
    for name in ("checkpoint", "pid_file", "ssl_certfile", "ssl_keyfile", "ssl_ca_certs"):
        value = getattr(config, name)
        if value is not None and not os.path.isabs(value):
            changes[name] = type(value)(os.path.abspath(value)) if isinstance(value, Path) \
                else os.path.abspath(value)
    return config.replace(**changes) if changes else config


def _notifier(listening: Listening) -> object | None:
    from graceful.systemd import SystemdNotifier

    notifier = SystemdNotifier.from_environment()
    if notifier is not None:
        notifier.listeners = lambda: [types.SimpleNamespace(name=name, sock=sock)
                                      for name, sock in listening.pairs()]
    return notifier


def serve_args() -> list[str]:
    """This process's serve arguments, as a restart reads them again."""
    args = sys.argv[1:]
    return args[1:] if args[:1] == ["serve"] else args
