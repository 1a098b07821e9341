"""One absolute stop deadline, computed when the stop arrives; each phase takes its budget
from it (trio's move_on_at, Go's context). All times are loop times (monotonic seconds)."""

from __future__ import annotations

import dataclasses

from graceful.config import Config


@dataclasses.dataclass
class StopBudget:
    """When each phase must end, for a stop requested at `started`.

    The checkpoint flush has `checkpoint_timeout` reserved at the end: the drain and the
    hooks end early enough to leave it.
    """

    started: float
    accept_until: float  # end of the pre-stop delay: the listeners close
    drain_until: float  # the drain deadline: handlers still running are cancelled
    cancel_until: float  # the end of the cancel grace
    hooks_until: float  # hooks end here, leaving the checkpoint its reserved time
    final: float  # the whole stop is over

    @classmethod
    def starting_at(cls, now: float, config: Config) -> StopBudget:
        accept_until = now + config.pre_stop_delay
        drain_until = accept_until + config.drain_timeout
        cancel_until = drain_until + config.cancel_grace
        final = now + config.stop_budget
        return cls(now, accept_until, drain_until, cancel_until,
                   final - config.checkpoint_timeout, final)

    def force(self, now: float, config: Config) -> None:
        """A second stop: no more pre-stop delay or drain; cancel now, with the grace."""
        self.accept_until = min(self.accept_until, now)
        self.drain_until = min(self.drain_until, now)
        self.cancel_until = min(self.cancel_until, now + config.cancel_grace)
