"""The supervisor's pause and continue are done once every worker told has said so
(graceful/supervisor/pausing.py): what a service reports to the SCM."""

from __future__ import annotations

from graceful.supervisor import orders
from graceful.supervisor.pausing import PauseReports


class Heard:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def paused(self) -> None:
        self.calls.append(("paused",))

    def resumed(self) -> None:
        self.calls.append(("resumed",))

    def resume_failed(self, error: str) -> None:
        self.calls.append(("resume_failed", error))


def reports() -> tuple[PauseReports, Heard]:
    heard = Heard()
    pausing = PauseReports()
    pausing.notifier = heard
    return pausing, heard


def test_1_paused_once_the_last_worker_has_paused():
    pausing, heard = reports()
    pausing.told(orders.PAUSE, [10, 11])
    pausing.heard(10, "paused")
    assert heard.calls == []
    pausing.heard(11, "resumed")  # not what was asked: not an answer
    assert heard.calls == []
    pausing.heard(11, "paused")
    assert heard.calls == [("paused",)]
    pausing.heard(11, "paused")  # said again: reported once
    assert heard.calls == [("paused",)]


def test_2_a_worker_that_exits_is_not_waited_for():
    pausing, heard = reports()
    pausing.told(orders.PAUSE, [10, 11])
    pausing.heard(10, "paused")
    pausing.gone(11)
    assert heard.calls == [("paused",)]


def test_3_a_continue_during_the_pause_replaces_it():
    pausing, heard = reports()
    pausing.told(orders.PAUSE, [10, 11])
    pausing.heard(10, "paused")
    pausing.told(orders.CONTINUE, [10, 11])
    pausing.heard(11, "paused")  # its pause, late: the continue is what is awaited now
    assert heard.calls == []
    pausing.heard(10, "resumed")
    pausing.heard(11, "resumed")
    assert heard.calls == [("resumed",)]


def test_4_one_resume_failed_is_the_continue_failed():
    pausing, heard = reports()
    pausing.told(orders.CONTINUE, [10, 11])
    pausing.heard(10, "resume_failed [WinError 10048] address in use")
    assert heard.calls == []
    pausing.heard(11, "resumed")
    assert heard.calls == [("resume_failed", "[WinError 10048] address in use")]


def test_5_no_worker_to_wait_for():
    pausing, heard = reports()
    pausing.told(orders.PAUSE, [])
    assert heard.calls == [("paused",)]
