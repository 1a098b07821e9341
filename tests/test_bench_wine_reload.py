"""The figures of `bench wine-reload` (the Wine run itself is not run here): which requests
belong to which reload, and when a reload counts as clean and within the p99 target.

1. A request belongs to the reload whose control window it started in or after, until the
   next reload's control window; its p99s are those of the 200s started in the control
   window and in the reload window.
2. One reset request makes its reload unclean, and only that one; a window whose p99 is
   more than twice the control's misses the target.
"""

from __future__ import annotations

from bench.client import RESET, Attempt
from bench.load import LoadState
from bench.wine_reload import Reload, _row, _totals


def _ok(start: float, took: float, outcome: str = "ok", error: str = "") -> Attempt:
    return Attempt(req_id=f"{start}", reused=False, start=start, end=start + took,
                   status=200 if outcome == "ok" else 0, error=error, outcome=outcome)


def _rows(attempts: list[Attempt]) -> list[dict]:
    done = [Reload(control_at=0.0, sent_at=5.0, back_at=15.0, code=0),
            Reload(control_at=20.0, sent_at=25.0, back_at=35.0, code=0)]
    states = {"new-connection": LoadState(attempts=attempts)}
    outcomes = [{"event": "restart.done", "pid": 7, "took_s": 9.0}] * 2
    return [_row(i, r, done, 40.0, attempts, states, outcomes, 7) for i, r in enumerate(done)]


def test_1_requests_go_to_their_reload():
    attempts = [_ok(1.0, 0.3), _ok(6.0, 0.6), _ok(19.0, 0.3), _ok(21.0, 0.3), _ok(30.0, 0.3)]
    first, second = _rows(attempts)
    assert first["counts"]["ok"] == 3 and second["counts"]["ok"] == 2
    assert first["control_ms"]["n"] == 1 and first["window_ms"]["n"] == 1
    assert first["p99_ratio"] == 2.0 and second["p99_ratio"] == 1.0
    assert first["pid_kept"] and first["outcome"] == "restart.done"


def test_2_clean_and_within_target():
    attempts = [_ok(1.0, 0.3), _ok(6.0, 0.7), _ok(21.0, 0.3), _ok(30.0, 0.3),
                _ok(31.0, 0.0, outcome="lost", error=RESET)]
    rows = _rows(attempts)
    totals = _totals(rows, attempts)
    assert rows[1]["counts"]["reset"] == 1 and rows[1]["counts"]["lost"] == 1
    assert totals["clean"] == 1 and totals["reloaded"] == 2
    assert totals["within_p99_target"] == 1 and totals["p99_ratio_max"] > 2
