"""Where the supervisor's stop, restart and pause requests come from: POSIX signals, or on
Windows the console's events (graceful/bridge/windows_console.py) or the SCM's controls
(graceful/windows/service_host.py). Each source calls the supervisor's `Requests`, on the
loop; the supervisor never knows which platform spoke.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any, Protocol

from graceful.supervisor import orders
from graceful.supervisor.early import EarlySignals


class Requests(Protocol):
    """The supervisor's side, each called on its loop."""

    def stop(self, order: int, source: str) -> None:
        """A stop (a repeated one escalates), forwarded to the workers as `order`."""

    def restart(self, source: str) -> None: ...

    def pause_or_continue(self, order: int) -> None: ...


class Sources(Protocol):
    def install(self, loop: asyncio.AbstractEventLoop, requests: Requests) -> None: ...

    def workers_ready(self) -> None:
        """The first workers serve: requests that wait for that may be delivered now."""

    def uninstall(self) -> None:
        """No more requests (the stop has ended); a console handler waiting is released."""


STOP_SIGNALS = (orders.STOP, orders.INTERRUPT, orders.QUIT)
FORWARDED = (orders.PAUSE, orders.CONTINUE)  # pause and continue: the workers' own


class PosixSignals:
    """SIGTERM, SIGINT, SIGQUIT stop; SIGHUP restarts; SIGUSR1/SIGUSR2 pause and continue.
    Signals that came before the loop (`early`): a stop at once, the others once the first
    workers serve."""

    def __init__(self, early: EarlySignals | None = None) -> None:
        self._early = early
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requests: Requests | None = None

    def install(self, loop: asyncio.AbstractEventLoop, requests: Requests) -> None:
        self._loop, self._requests = loop, requests
        for signum in (*STOP_SIGNALS, orders.RESTART, *FORWARDED):
            loop.add_signal_handler(signum, self._on_signal, signum)
        if self._early is not None:
            self._early.replay(self._on_signal, only=STOP_SIGNALS)

    def workers_ready(self) -> None:
        if self._early is not None:  # a pause or a restart sent as soon as one served
            self._early.replay(self._on_signal)

    def uninstall(self) -> None:
        if self._loop is not None:
            for signum in (*STOP_SIGNALS, orders.RESTART, *FORWARDED):
                self._loop.remove_signal_handler(signum)
                # not the default action: the stop is over and its exit code decided; a
                # SIGTERM in the last moments (a failed start exits within a second) would
                # end the process by the signal instead of with its code
                signal.signal(signum, signal.SIG_IGN)

    def _on_signal(self, signum: int) -> None:
        requests = self._requests
        assert requests is not None
        if signum == orders.RESTART:
            requests.restart("SIGHUP")
        elif signum in FORWARDED:
            requests.pause_or_continue(signum)
        else:
            requests.stop(signum, signal.Signals(signum).name)


class ConsoleEvents:
    """Windows console: Ctrl+C, Ctrl+Break, close, logoff and shutdown, through the same
    bridge as a process that serves by itself (its handler waits for the end of the stop
    within the OS's limit, and asks for the fast stop before it: a second request, which
    the workers receive as their own second stop)."""

    def __init__(self, bridge: Any) -> None:
        self._bridge = bridge  # a WindowsConsoleBridge, captured at the start of serve

    def install(self, loop: asyncio.AbstractEventLoop, requests: Requests) -> None:
        def deliver(request: Any) -> None:  # any thread: the console's, a signal handler
            source = str(getattr(request, "source", "CTRL_C"))
            order = orders.INTERRUPT if source == "CTRL_C" else orders.STOP
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(requests.stop, order, source)

        self._bridge.install(deliver)

    def workers_ready(self) -> None:
        pass

    def uninstall(self) -> None:
        self._bridge.uninstall()
