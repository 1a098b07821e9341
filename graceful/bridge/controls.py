"""Pause and continue requests: what a pause source (SIGUSR1/SIGUSR2, the SCM's PAUSE and
CONTINUE controls, `runtime.pause()`) becomes. Light on purpose: the POSIX bridge imports it
before aiohttp is imported. The pause itself is graceful/lifecycle/pause.py."""

from __future__ import annotations

import dataclasses
import enum
import time


class PauseAction(enum.StrEnum):
    PAUSE = "pause"
    RESUME = "resume"


@dataclasses.dataclass(frozen=True)
class PauseRequest:
    action: PauseAction
    source: str
    # Monotonic time of arrival, taken where the request was made (maybe another thread).
    at: float = dataclasses.field(default_factory=time.monotonic)
