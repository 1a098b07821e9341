"""The bench's figures and tables from hand-made attempts (no servers, no timing)."""

from __future__ import annotations

import pytest

from bench.client import Attempt
from bench.figures import run_figures, timeline
from bench.report import drain_table, loss_summary, summary_cells


def attempt(start: float, end: float, outcome: str, close: bool = False) -> Attempt:
    a = Attempt(req_id=f"{start}", reused=True, start=start, end=end, outcome=outcome)
    a.conn_close = close
    return a


ATTEMPTS = [
    attempt(9.0, 9.3, "ok"),  # before the signal at 10.0
    attempt(9.8, 10.1, "ok", close=True),  # in flight at the signal: 0.1 s left
    attempt(9.9, 10.2, "ok", close=True),  # in flight: 0.2 s left (the longest)
    attempt(9.95, 10.05, "keepalive_race"),
    attempt(10.01, 10.011, "refused"),
    attempt(10.3, 10.3, "refused"),
]


def test_1_drain_figures() -> None:
    f = run_figures(ATTEMPTS, t_signal=10.0, t_exit=10.25, nominal_s=0.3,
                    refused_first=10.02, last_accept=10.0)
    assert f["counts"] == {"ok": 3, "refused": 2, "keepalive_race": 1, "lost": 0, "5xx": 0,
                           "timeout": 0}
    assert (f["lost"], f["race"], f["in_flight_at_signal"]) == (0, 1, 3)
    assert abs(f["work_left_s"] - 0.25) < 1e-9  # 9.95 + 0.3 - 10.0: the race was written too
    assert abs(f["overhead_ms"] - 0.0) < 1e-6
    assert f["listener_closed_s"] == 0.011  # the first refused, from a client
    assert (f["drain_conn_close"], f["drain_responses"]) == (2, 2)
    assert f["p50_ms"] == 300.0


def test_2_pre_stop_delay_moves_the_cut_off() -> None:
    late = [*ATTEMPTS, attempt(10.5, 10.8, "ok", close=True)]
    f = run_figures(late, 10.0, 10.85, 0.3, None, None, pre_stop_s=1.0)
    assert abs(f["work_left_s"] - 0.8) < 1e-9
    assert abs(f["overhead_ms"] - 50.0) < 1e-6


def test_3_timeline_counts_every_attempt_once() -> None:
    tl = timeline(ATTEMPTS, 10.0, 10.25)
    assert sum(sum(v) for v in tl["ends"].values()) == len(ATTEMPTS)  # all end in the window
    assert max(tl["in_flight"]) == 3


def test_4_tables_name_every_server() -> None:
    runs = []
    for server, race in (("graceful", 0), ("aiohttp", 3)):
        f = run_figures(ATTEMPTS, 10.0, 10.25, 0.3, None, None)
        runs.append({**f, "race": race, "server": server, "scenario": "short",
                     "connections": 50, "signal": "SIGTERM", "repeat": 1,
                     "peer_defaults": False, "exit_code": 0, "killed": False})
    table = drain_table(runs)
    assert "| short | 50 | SIGTERM | aiohttp | 3 | 0 | 3 |" in table
    summary = loss_summary(runs)
    assert "| aiohttp | 1 | 0 | 3 |" in summary and "| 1.00 |" in summary


def _summary_runs() -> list[dict]:
    runs = []
    for server, scenario, lost, race in (("graceful", "short", 0, 0), ("aiohttp", "short", 2, 5),
                                         ("graceful", "long", 0, 0)):
        f = run_figures(ATTEMPTS, 10.0, 10.25, 0.3, None, None)
        runs.append({**f, "lost": lost, "race": race, "server": server, "scenario": scenario,
                     "connections": 50, "signal": "SIGTERM", "repeat": 1,
                     "peer_defaults": False, "exit_code": 0, "killed": False})
    return runs


def test_5_summary_cells_keep_zeros_and_gaps() -> None:
    servers, keys, cells = summary_cells(_summary_runs())
    assert servers == ["graceful", "aiohttp"]
    assert keys == [("short", 50, "SIGTERM"), ("long", 50, "SIGTERM")]
    assert cells[("graceful", keys[0])] == (0, 0)
    assert cells[("aiohttp", keys[0])] == (2, 5)
    assert ("aiohttp", keys[1]) not in cells  # not run: drawn as "-", not as zero


def test_6_summary_figure_is_drawn(tmp_path) -> None:
    plots = pytest.importorskip("bench.plots")  # matplotlib: the bench extra
    path = plots.summary_grid(_summary_runs(), tmp_path)
    assert path.name == "summary.png" and path.read_bytes()[:4] == b"\x89PNG"


def test_7_latency_counts_what_was_still_waiting_at_the_signal() -> None:
    """A connect left to the client's SYN retries (a full accept queue) and unanswered at
    the signal counts at the age it had reached: leaving it out would make that server's
    p99 look better than one that accepted everything."""
    first = Attempt(req_id="a", reused=False, start=8.0, end=8.31, outcome="ok")
    waiting = Attempt(req_id="b", reused=False, start=8.0, end=10.4, outcome="ok")
    later = [attempt(8.4 + n * 0.01, 8.7 + n * 0.01, "ok") for n in range(3)]
    f = run_figures([first, waiting, *later], 10.0, 10.5, 0.3, None, None)
    assert f["unfinished_before"] == 1
    assert f["max_ms"] == 2000.0  # 10.0 - 8.0, a lower bound
    assert f["latency_ms"]["first"] == {"n": 2, "p50": 310.0, "p99": 2000.0, "max": 2000.0}
    assert f["latency_ms"]["later"]["n"] == 3


def test_8_latency_table_compares_the_p99_overhead_in_the_same_repeat() -> None:
    from bench.report import latency_table

    runs = []
    for server, p99 in (("graceful", 306.0), ("aiohttp", 304.0)):
        runs.append({"server": server, "scenario": "short", "connections": 500,
                     "signal": "SIGTERM", "repeat": 1, "p50_ms": 301.0, "p99_ms": p99,
                     "max_ms": p99 + 1, "nominal_ms": 300.0, "unfinished_before": 0,
                     "latency_ms": {"first": {"p99": p99}, "later": {"p99": p99}}})
    table = latency_table(runs)
    assert ("| short | 500 | SIGTERM | graceful | 301.0 | 306.0 | 307.0 | 306.0 | 306.0 | 0 "
            "| 6.0 | 1.50 |") in table
