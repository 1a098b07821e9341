"""What a worker process is started with, apart from its descriptors: the interpreter and
entry it starts through, the folder it starts in, the environment it finds (the
supervisor's own, as the supervisor found it), and the names of the variables that tell it
where its supervisor's descriptors are (graceful/lifecycle/worker_link.py reads them).
Light on imports: the first worker is spawned from here before the command line is read
(early_worker.py).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping

SUPERVISOR_ENV = "GRACEFUL_SUPERVISOR_PID"
READY_FD_ENV = "GRACEFUL_WORKER_READY_FD"
CONFIG_FD_ENV = "GRACEFUL_WORKER_CONFIG_FD"
LOCK_FD_ENV = "GRACEFUL_WORKER_LOCK_FD"
GO_FD_ENV = "GRACEFUL_WORKER_GO_FD"
SETUP_FD_ENV = "GRACEFUL_WORKER_SETUP_FD"
HANDOFF_FD_ENV = "GRACEFUL_WORKER_HANDOFF_FD"
NUMBER_ENV = "GRACEFUL_WORKER_NUMBER"
# set when the supervisor extends systemd's stop timeout for its workers (it has
# NOTIFY_SOCKET, they do not): a worker's budget check then knows the timeout is no limit
STOP_EXTENDED_ENV = "GRACEFUL_SUPERVISOR_EXTENDS_STOP"
# The supervisor's to use, not a worker's: systemd would take a worker's READY=1 for ours.
_NOT_FOR_WORKERS = ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "FDSTORE",
                    "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")


def worker_environment(environ: Mapping[str, str], number: int) -> dict[str, str]:
    """The environment worker `number` starts with, made of the supervisor's `environ`."""
    env = {key: value for key, value in environ.items() if key not in _NOT_FOR_WORKERS}
    env[SUPERVISOR_ENV] = str(os.getpid())
    env[NUMBER_ENV] = str(number)
    if environ.get("NOTIFY_SOCKET"):
        env[STOP_EXTENDED_ENV] = "1"
    return env


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
