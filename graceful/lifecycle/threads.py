"""Work the application left to threads, waited for at exit as the interpreter would, bounded.

The CLI leaves with os._exit once the stop is complete (the interpreter's teardown took 40
to 90 ms after aiohttp). That would also skip what the interpreter does first at exit
(threading._shutdown, CPython 3.11 to 3.13): run the hooks registered with
threading._register_atexit, among them concurrent.futures' _python_exit, which lets every
ThreadPoolExecutor finish the jobs queued on it, then join every non-daemon thread. The
application's last writes, handed to a thread in on_cleanup, were lost when the exit
skipped this (an os._exit after the stop).
`join_all` does the same work, with a deadline, so that a thread that never ends cannot
hold the process.

This module is the one place that relies on CPython's private names:
- `threading._threading_atexits`: the list of argument-less callables that
  threading._register_atexit appends to and threading._shutdown calls in reverse order;
- `atexit._run_exitfuncs`: runs (and clears) the atexit handlers, as the interpreter does
  after joining the threads.
Where one is missing `supported()` is False, and the CLI leaves through the interpreter's
own exit instead: complete, but neither fast nor bounded. tests/test_threads.py fails
when CPython moves them.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
import time
from collections.abc import Callable

from graceful.errors import ExitCode, worst
from graceful.logs import get_logger

# Work left to threads is waited for until the end of the stop budget plus this much, so
# that a last write handed to a thread when the budget is spent still gets a moment. Below
# the margin announced to systemd (systemd.EXTEND_MARGIN_S).
RESERVE_S = 1.0


def supported() -> bool:
    """True when this Python keeps its exit hooks where this module finds them."""
    return (isinstance(getattr(threading, "_threading_atexits", None), list)
            and callable(getattr(atexit, "_run_exitfuncs", None)))


# Set by a stop request that comes while the exit waits for threads: it ends the wait.
_stop_waiting = threading.Event()


def stop_waiting(*_: object) -> None:
    """End a `join_all` in progress (or the next one) at once. Safe from a signal handler."""
    _stop_waiting.set()


def join_all(deadline: float) -> list[str]:
    """What the interpreter does with threads at exit, until `deadline` (time.monotonic()).

    Runs the thread exit hooks (ThreadPoolExecutors finish their queued jobs), then joins
    every non-daemon thread. Returns the names of those still running at the deadline, or
    at `stop_waiting()` (a stop request during the wait) or a KeyboardInterrupt. Call
    it once, just before os._exit: afterwards no ThreadPoolExecutor accepts a job. Does
    nothing where not `supported()`: the interpreter's own exit must do it then.
    """
    if not supported():
        return []
    hooks: list[Callable[[], object]] = list(threading._threading_atexits)  # type: ignore[attr-defined]
    # The caller is not always the main thread: the Windows service exits from SvcRun's.
    caller = threading.current_thread()
    if not (pending := _non_daemon_threads(caller)):
        _run_exit_hooks(hooks)  # no thread for them to wait on: they return at once
        return []
    done = _stop_waiting  # the joiner sets it when every thread is done; so does a stop

    def join() -> None:
        _run_exit_hooks(hooks)  # _python_exit joins executor threads without a timeout
        while rest := _non_daemon_threads(caller):
            for thread in rest:
                thread.join()
        done.set()

    # The main thread waits on an Event, never in Thread.join: a KeyboardInterrupt there
    # marks the joined thread stopped while it still runs (CPython 3.11, bpo-45274's fix).
    joiner = threading.Thread(target=join, daemon=True, name="graceful.exit-joiner")
    try:
        joiner.start()
        get_logger().info("exit.waiting_threads", threads=[thread.name for thread in pending],
                          timeout_s=round(_left(deadline), 3))
        done.wait(_left(deadline))
    except KeyboardInterrupt:
        pass
    return [thread.name for thread in _non_daemon_threads(caller)]


def run_atexit_handlers() -> None:
    """The atexit handlers (logging's flush, the application's own), once, in LIFO order."""
    atexit._run_exitfuncs()


def reported(code: ExitCode, abandoned: list[str]) -> ExitCode:
    """Log threads still running at the bound; their work is cut, so exit code 3 at least."""
    if not abandoned:
        return code
    get_logger().warning("exit.abandoned_threads", threads=abandoned)
    return worst(code, ExitCode.DRAIN_DEADLINE)


class DefaultExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor (run_in_executor(None, ...), asyncio.to_thread), owned by
    the runner so that its jobs can be waited for with a bound: asyncio's
    shutdown_default_executor has no timeout before Python 3.12, and cancelling it still
    joins the executor without one."""

    def __init__(self) -> None:
        self._workers: list[threading.Thread] = []
        super().__init__(thread_name_prefix="asyncio", initializer=self._started)

    def _started(self) -> None:
        self._workers.append(threading.current_thread())

    async def shutdown_until(self, deadline: float) -> list[str]:
        """Shut down, letting queued jobs run until `deadline` (time.monotonic()), the loop
        running meanwhile (a job may hand its result back to it); return the names of the
        threads still busy then."""
        if not self._workers:
            self.shutdown(wait=False)
            return []
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def shutdown() -> None:
            self.shutdown(wait=True)
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits now
                loop.call_soon_threadsafe(_resolve, done)

        threading.Thread(target=shutdown, daemon=True, name="graceful.executor-shutdown").start()
        await asyncio.wait([done], timeout=_left(deadline))
        return self.busy_threads()

    def busy_threads(self) -> list[str]:
        """Names of its threads still running (after shutdown: still busy with a job)."""
        return [thread.name for thread in self._workers if thread.is_alive()]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _run_exit_hooks(hooks: list[Callable[[], object]]) -> None:
    for hook in reversed(hooks):
        try:
            hook()
        except Exception as err:  # the interpreter reports these and goes on
            get_logger().error("exit.thread_hook_failed", hook=repr(hook), error=repr(err))


def _non_daemon_threads(caller: threading.Thread) -> list[threading.Thread]:
    """The threads the exit waits for: not the caller's, the joiner's or the main one."""
    skip = {caller, threading.current_thread(), threading.main_thread()}
    return [thread for thread in threading.enumerate()
            if not thread.daemon and thread not in skip and thread.is_alive()]


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)
