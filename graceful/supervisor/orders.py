"""What the supervisor tells a worker, by number.

On POSIX each order is the signal of that number (`kill(pid, order)`). Windows has no
signals between processes, and SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 do not exist there: the
same numbers travel as a word on the worker's control pipe (windows_spawn.py), which the
worker's bridge reads (graceful/bridge/supervised.py). The numbers are POSIX's on both, so
that the code that decides (workers.py, rolling.py, supervisor.py) is one.
"""

from __future__ import annotations

import signal

STOP = int(signal.SIGTERM)  # drain and exit
INTERRUPT = int(signal.SIGINT)  # drain and exit (a Ctrl+C forwarded)
QUIT = int(getattr(signal, "SIGQUIT", 3))
RESTART = int(getattr(signal, "SIGHUP", 1))  # drain and exit: replaced by a new worker
PAUSE = int(getattr(signal, "SIGUSR1", 10))
CONTINUE = int(getattr(signal, "SIGUSR2", 12))
KILL = int(getattr(signal, "SIGKILL", 9))

# The words on a Windows worker's control pipe.
WORDS = {STOP: "stop", INTERRUPT: "stop", QUIT: "stop", RESTART: "restart", PAUSE: "pause",
         CONTINUE: "continue"}


def name(order: int) -> str:
    """The signal's name where it exists (POSIX), else the order's word."""
    try:
        return signal.Signals(order).name
    except ValueError:
        return WORDS.get(order, str(order))
