"""The stop budget: one immutable deadline on one clock, anchored at the stop request.

1. Each phase's end follows from the config, counted from the request's own timestamp.
2. A force in the middle of the drain ends the drain now, gives the cancel its grace, and
   leaves the hooks and the checkpoint their times.
3. The checkpoint's reserve is never eaten: however late the clock, its budget is at least
   checkpoint_timeout.
4. Abandon: every phase is over, nothing is left.
"""

from __future__ import annotations

import dataclasses

import pytest

from graceful.config import Config
from graceful.lifecycle.deadline import StopBudget

CONFIG = Config(pre_stop_delay=2, drain_timeout=10, cancel_grace=1, hook_timeout=3,
                checkpoint_timeout=4)


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_budgets_at_each_phase() -> None:
    """1."""
    clock = FakeClock(100.0)
    budget = StopBudget.starting_at(100.0, CONFIG, clock)
    assert (budget.accept_until, budget.drain_until, budget.cancel_until,
            budget.hooks_until, budget.final) == (102, 112, 113, 119, 123)
    assert budget.final - budget.started == CONFIG.stop_budget
    assert budget.hooks_until - budget.cancel_until == CONFIG.hooks_budget
    assert budget.time_left == 23
    clock.now = 105  # in the drain
    assert budget.left(budget.drain_until) == 7
    clock.now = 115  # in the hooks
    assert budget.left(budget.drain_until) == 0
    assert budget.left(budget.hooks_until) == 4
    assert budget.checkpoint_budget == 8


def test_anchored_at_the_request_not_at_now() -> None:
    """1. A request stamped before the loop saw it: its budget counts from the stamp."""
    budget = StopBudget.starting_at(50.0, CONFIG, FakeClock(50.3))
    assert budget.started == 50.0
    assert budget.time_left == pytest.approx(CONFIG.stop_budget - 0.3)


def test_force_in_the_middle_of_the_drain() -> None:
    """2."""
    clock = FakeClock(100.0)
    budget = StopBudget.starting_at(100.0, CONFIG, clock)
    clock.now = 106
    forced = budget.force(106.0)
    assert forced is not budget and budget.drain_until == 112  # immutable: a new budget
    assert (forced.accept_until, forced.drain_until, forced.cancel_until) == (102, 106, 107)
    assert (forced.hooks_until, forced.final) == (budget.hooks_until, budget.final)
    with pytest.raises(dataclasses.FrozenInstanceError):
        forced.drain_until = 0  # type: ignore[misc]


def test_force_during_the_pre_stop_delay() -> None:
    """2. Before the listeners closed: they close now."""
    forced = StopBudget.starting_at(100.0, CONFIG, FakeClock(101)).force(101.0)
    assert (forced.accept_until, forced.drain_until, forced.cancel_until) == (101, 101, 102)


def test_checkpoint_reserve_never_eaten() -> None:
    """3."""
    clock = FakeClock(100.0)
    budget = StopBudget.starting_at(100.0, CONFIG, clock)
    clock.now = 122  # a slow hook ran over: 1 s left of the stop
    assert budget.checkpoint_budget == CONFIG.checkpoint_timeout
    clock.now = 500
    assert budget.checkpoint_budget == CONFIG.checkpoint_timeout
    assert budget.time_left == 0
    assert budget.force(500.0).final - budget.force(500.0).hooks_until == 4


def test_abandon() -> None:
    """4."""
    clock = FakeClock(100.0)
    budget = StopBudget.starting_at(100.0, CONFIG, clock).force(103.0)
    clock.now = 103.5
    abandoned = budget.abandon(103.5)
    assert abandoned.time_left == 0
    assert abandoned.left(abandoned.hooks_until) == 0
    assert abandoned.final == abandoned.hooks_until == 103.5


def test_hooks_budget_is_explicit() -> None:
    assert CONFIG.hooks_budget == 6
    assert CONFIG.stop_budget == 2 + 10 + 1 + 6 + 4
