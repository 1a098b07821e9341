"""A restart's successor imports its modules at a lower CPU priority.

While a successor starts, the old process serves every request on the same cores; the
successor's imports (aiohttp, uvloop, graceful: most of its start's CPU) would take CPU from
it just then and stretch the latency of the requests it serves (issue 15). A process cannot
raise its priority again once it has lowered it, but on Linux a priority belongs to a
thread: a thread of its own, niced, imports the modules while the main thread waits, and the
main thread, at the priority it had, builds the app and serves. The app's own module is
imported on the main thread as before (its import may install signal handlers, which only
the main thread can). Elsewhere, or when nice fails, the imports run at the usual priority.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading

READY_FD_ENV = "GRACEFUL_RESTART_READY_FD"  # set for a restart's successor (successor.py)
NICE = 10  # more than the process's own: the thread gets about a tenth of the CPU the old
# process's thread gets
MODULES = ("graceful.cli", "graceful.runner", "graceful.logs", "graceful.http.aiohttp_check",
           "aiohttp.web", "uvloop")


_done = False


def in_successor() -> None:
    """In a restart's successor (Linux): import MODULES on a niced thread, then return.
    Called by `python -m graceful` before anything else, and by `graceful serve` (the
    console script's way in) once the stop signals are taken over; the second call is free."""
    global _done
    if _done or READY_FD_ENV not in os.environ or not sys.platform.startswith("linux"):
        return
    _done = True
    thread = threading.Thread(target=_import_niced, name="graceful-preload", daemon=True)
    thread.start()
    thread.join()


def _import_niced() -> None:
    thread = threading.get_native_id()  # on Linux, PRIO_PROCESS with a thread id: that thread
    with contextlib.suppress(OSError):
        nice = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(nice + NICE, 19))
    for name in MODULES:
        with contextlib.suppress(Exception):  # the main thread imports it again, and fails loud
            importlib.import_module(name)
