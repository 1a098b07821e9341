"""How a worker is started: a fresh interpreter that is given exactly what it should have.

A worker is `python -m graceful worker MODULE:ATTR`, started the way the supervisor itself
was (the same interpreter, options and entry point: the pytest plugin's wrapper too), with
the supervisor's own environment (as the supervisor found it at its start: nothing an
application changed reaches a new worker), in the folder $PWD named at the supervisor's
start (a deploy's symlink switched since is followed), given the listening sockets, the
checkpoint's lock, the configuration (through a pipe: it holds the TLS key's password) and
a ready pipe. The worker's side is graceful/lifecycle/worker_link.py. No logging here: the
supervisor starts its first workers before it has imported its log's machinery (structlog), so that
the two starts overlap.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from graceful.config import Config
from graceful.supervisor.listening import Listening
from graceful.supervisor.metrics_folder import ENV as METRICS_FOLDER_ENV
from graceful.supervisor.metrics_folder import MetricsFolder
from graceful.supervisor.spawn import Spawned, handoff_pair, spawn
from graceful.supervisor.worker_env import (
    CONFIG_FD_ENV,
    GO_FD_ENV,
    HANDOFF_FD_ENV,
    LOCK_FD_ENV,
    READY_FD_ENV,
    entry_point,
    start_folder,
    worker_environment,
)


def config_to_json(config: Config) -> str:
    fields = dataclasses.asdict(config)
    return json.dumps({key: (str(value) if isinstance(value, Path) else value)
                       for key, value in fields.items()})


def config_from_json(text: str) -> Config:
    return Config(**json.loads(text))


@dataclasses.dataclass
class Launcher:
    """How a worker is started; `config` is replaced by a restart's."""

    target: str
    app_dir: str | None
    config: Config
    environ: Mapping[str, str]
    listening: Listening
    # computed once, at the supervisor's start: a symlink's path, followed at each spawn
    folder: str = dataclasses.field(default_factory=lambda: start_folder())
    lock_fd: int | None = None
    metrics: MetricsFolder | None = None  # with --metrics-bind: the workers' metrics
    entry: list[str] = dataclasses.field(default_factory=lambda: entry_point())
    # where the workers' output goes (whole lines); None: our own stdout and stderr
    output: Callable[[bytes, str, int], None] | None = None

    def extra_env(self) -> dict[str, str]:
        """What a worker finds in its environment beside the supervisor's own."""
        if self.metrics is None:
            return {}
        return {METRICS_FOLDER_ENV: self.metrics.path}  # read by prometheus_client's import

    def spawn_first(self) -> Spawned:
        """Worker 1 of the first start: the one spawned before the command line was read
        when it was started as this one would be (early_worker.py), else a new one."""
        early = None
        if sys.platform != "win32":
            from graceful.supervisor.early_worker import EarlyWorker

            early = EarlyWorker.take()
        if early is None:
            return self.spawn(1)
        if not early.fits([*self.entry, "worker"], worker_environment(self.environ, 1),
                          self.folder):
            early.discard()
            return self.spawn(1)
        try:
            return early.hand(self.target, self.app_dir, config_to_json(self.config),
                              self.listening.pairs(), self.lock_fd, self.extra_env())
        except OSError:  # it died first (ended by hand): one spawned now says why, if it can
            return self.spawn(1)

    def spawn(self, number: int, go_fd: int | None = None) -> Spawned:
        argv = [*self.entry, "worker", self.target]
        if self.app_dir is not None:
            argv += ["--app-dir", self.app_dir]
        env = {**worker_environment(self.environ, number), **self.extra_env()}
        if sys.platform == "win32":  # no descriptors to pass: windows_spawn.py
            from graceful.supervisor import windows_spawn

            return windows_spawn.spawn(argv, env, self.folder, self.listening.pairs(),
                                       config_to_json(self.config), READY_FD_ENV)
        config_r, config_w = os.pipe()
        try:
            os.write(config_w, config_to_json(self.config).encode())
        finally:
            os.close(config_w)
        passed = [(CONFIG_FD_ENV, config_r)]
        if self.lock_fd is not None:
            passed.append((LOCK_FD_ENV, self.lock_fd))
        if go_fd is not None:
            passed.append((GO_FD_ENV, go_fd))
        handoff, theirs = handoff_pair()
        passed.append((HANDOFF_FD_ENV, theirs.fileno()))
        try:
            spawned = spawn(argv, env, self.folder, self.listening.pairs(), passed,
                            READY_FD_ENV)
        except BaseException:
            handoff.close()
            raise
        finally:
            os.close(config_r)
            theirs.close()
        spawned.handoff = handoff
        return spawned
