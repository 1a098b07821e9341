"""Stop requests: what every stop source (signals, console events, the SCM, the API) becomes."""

from __future__ import annotations

import dataclasses
import enum
import time


class StopSource(enum.StrEnum):
    SIGTERM = "SIGTERM"
    SIGINT = "SIGINT"
    SIGQUIT = "SIGQUIT"
    CTRL_C = "CTRL_C"
    CTRL_BREAK = "CTRL_BREAK"
    CTRL_CLOSE = "CTRL_CLOSE"
    CTRL_LOGOFF = "CTRL_LOGOFF"
    CTRL_SHUTDOWN = "CTRL_SHUTDOWN"
    SCM_STOP = "SCM_STOP"
    SCM_PRESHUTDOWN = "SCM_PRESHUTDOWN"
    SCM_SHUTDOWN = "SCM_SHUTDOWN"
    API = "API"
    RESTART = "RESTART"  # new workers serve: this one is replaced (graceful/supervisor/)


class StopLevel(enum.IntEnum):
    """How hard a stop is, from how many stop requests have arrived."""

    GRACEFUL = 1  # drain under the deadline
    FORCE = 2  # cancel what is in flight now; hooks and checkpoint still run, bounded
    ABANDON = 3  # best-effort checkpoint flush, then exit at once


@dataclasses.dataclass(frozen=True)
class StopRequest:
    source: StopSource
    reason: str = ""
    # Monotonic time of arrival, taken where the request was made (maybe another thread).
    at: float = dataclasses.field(default_factory=time.monotonic)


@dataclasses.dataclass(frozen=True)
class RestartRequest:
    """SIGHUP: to the supervisor, replace the workers; to a worker, stop (replaced)."""

    source: str
    at: float = dataclasses.field(default_factory=time.monotonic)


class StopObserver:
    """Told about the stop as it goes, so a supervisor can be kept informed.

    The Windows service reports STOP_PENDING with a rising checkpoint from these calls, the
    console handler waits for `stopped`. All calls happen on the loop thread; the default
    methods do nothing, so an observer overrides only what it needs.
    """

    def ready(self) -> None:
        """Listeners are bound and the app serves."""

    def stop_requested(self, source: str, mode: str) -> None:
        """A stop request counted (not a repeat ignored): mode graceful, force or abandon."""

    def phase(self, name: str, time_left_s: float) -> None:
        """A stop phase started; `time_left_s` is what remains of the whole stop budget."""

    def drain_progress(self, in_flight: int, time_left_s: float) -> None:
        """A drain tick (about once a second) with the requests still running."""

    def hooks_failed(self, names: list[str]) -> None:
        """Shutdown hooks (or aiohttp on_shutdown/on_cleanup handlers) failed or timed out."""

    def checkpoint_flushed(self, generation: int, took_s: float | None,
                           written_at: float) -> None:
        """The checkpoint holds `generation`, written at `written_at` (time.time()); took_s
        is None for the generation restored at start."""

    def paused(self) -> None:
        """A pause has drained: not accepting, the process and its state kept."""

    def resumed(self) -> None:
        """Accepting again after a pause."""

    def resume_failed(self, error: str) -> None:
        """A continue could not accept again (Windows binds the address again at a continue,
        and another process may have taken the port): still paused, a later one retries."""

    def stopped(self, exit_code: int) -> None:
        """The stop finished (or the start was abandoned) with this exit code."""
