"""One absolute stop deadline, computed once from the stop request's own timestamp; each
phase takes its budget from it (trio's move_on_at, Go's context).

One clock for all of it: time.monotonic, the clock a StopRequest is stamped with (from any
thread). Not loop.time(): uvloop's is a different, millisecond clock.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from graceful.config import Config

Clock = Callable[[], float]


@dataclasses.dataclass(frozen=True)
class StopBudget:
    """When each phase must end, for a stop requested at `started` (all on `clock`).

    The checkpoint flush has `checkpoint_timeout` reserved at the end: the drain and the
    hooks end early enough to leave it, and neither a force nor a slow phase moves it.
    Immutable: `force` and `abandon` return a new budget.
    """

    started: float
    accept_until: float  # end of the pre-stop delay: the listeners close
    drain_until: float  # the drain deadline: handlers still running are cancelled
    cancel_until: float  # the end of the cancel grace
    hooks_until: float  # hooks end here, leaving the checkpoint its reserved time
    final: float  # the whole stop is over
    cancel_grace: float
    checkpoint_reserve: float
    clock: Clock = dataclasses.field(default=time.monotonic, repr=False, compare=False)

    @classmethod
    def starting_at(cls, at: float, config: Config, clock: Clock = time.monotonic
                    ) -> StopBudget:
        """The budget of a stop requested at `at` (a StopRequest's own timestamp)."""
        accept_until = at + config.pre_stop_delay
        drain_until = accept_until + config.drain_timeout
        cancel_until = drain_until + config.cancel_grace
        hooks_until = cancel_until + config.hooks_budget
        final = hooks_until + config.checkpoint_timeout  # == at + config.stop_budget
        return cls(at, accept_until, drain_until, cancel_until, hooks_until, final,
                   config.cancel_grace, config.checkpoint_timeout, clock)

    def force(self, at: float) -> StopBudget:
        """A second stop at `at`: no more pre-stop delay or drain; cancel now, with the
        grace. The hooks and the checkpoint keep their times."""
        return dataclasses.replace(
            self, accept_until=min(self.accept_until, at), drain_until=min(self.drain_until, at),
            cancel_until=min(self.cancel_until, at + self.cancel_grace))

    def abandon(self, at: float) -> StopBudget:
        """A third stop at `at`: every phase is over."""
        end = min(self.final, at)
        return dataclasses.replace(self, accept_until=min(self.accept_until, end),
                                   drain_until=min(self.drain_until, end),
                                   cancel_until=min(self.cancel_until, end),
                                   hooks_until=min(self.hooks_until, end), final=end)

    def now(self) -> float:
        return self.clock()

    def left(self, until: float) -> float:
        """Seconds from now to `until`, never below 0."""
        return max(until - self.clock(), 0.0)

    @property
    def time_left(self) -> float:
        """What remains of the whole stop."""
        return self.left(self.final)

    @property
    def checkpoint_budget(self) -> float:
        """The final flush's time: what is left of the stop, never less than its reserve."""
        return max(self.left(self.final), self.checkpoint_reserve)
