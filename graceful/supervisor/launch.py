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

import contextlib
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
from graceful.supervisor.spawn import Spawned, spawn

# What a worker finds in its environment (graceful/lifecycle/worker_link.py reads them).
SUPERVISOR_ENV = "GRACEFUL_SUPERVISOR_PID"
READY_FD_ENV = "GRACEFUL_WORKER_READY_FD"
CONFIG_FD_ENV = "GRACEFUL_WORKER_CONFIG_FD"
LOCK_FD_ENV = "GRACEFUL_WORKER_LOCK_FD"
GO_FD_ENV = "GRACEFUL_WORKER_GO_FD"
NUMBER_ENV = "GRACEFUL_WORKER_NUMBER"
# The supervisor's to use, not a worker's: systemd would take a worker's READY=1 for ours.
_NOT_FOR_WORKERS = ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "FDSTORE",
                    "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

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
    output: Callable[[bytes], None] | None = None

    def spawn(self, number: int, go_fd: int | None = None) -> Spawned:
        argv = [*self.entry, "worker", self.target]
        if self.app_dir is not None:
            argv += ["--app-dir", self.app_dir]
        env = {key: value for key, value in self.environ.items() if key not in _NOT_FOR_WORKERS}
        env[SUPERVISOR_ENV] = str(os.getpid())
        env[NUMBER_ENV] = str(number)
        if self.metrics is not None:  # read by prometheus_client at its import in the worker
            env[METRICS_FOLDER_ENV] = self.metrics.path
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
        try:
            return spawn(argv, env, self.folder, self.listening.pairs(), passed, READY_FD_ENV)
        finally:
            os.close(config_r)



def start_folder() -> str:
    """Where workers start: $PWD when it names our working directory at our start, as a
    shell or systemd's WorkingDirectory= sets it, else that directory. $PWD may go through a
    symlink a deploy switches to the next release (`current -> releases/v2`): a worker
    started after the switch starts in the release the link names then (our own working
    directory is the release it named at our start: the kernel keeps the folder)."""
    here = os.getcwd()
    named = os.environ.get("PWD")
    with contextlib.suppress(OSError):
        if named and os.path.isabs(named) and os.path.samefile(named, here):
            return named
    return here


def entry_point() -> list[str]:
    """How this process was started, up to its command (`serve`): the interpreter, its
    options and the script or module (`graceful`, `-m graceful`, or a wrapper such as the
    pytest plugin's `-m graceful.testing.child`). A worker is started the same way."""
    args = sys.argv[1:]
    orig = sys.orig_argv
    if args and orig[len(orig) - len(args):] == args:
        return [sys.executable, *orig[1:len(orig) - len(args)]]
    return [sys.executable, "-m", "graceful"]
