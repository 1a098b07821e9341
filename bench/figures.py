"""Figures of one drain run, computed from the classified attempts."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from bench.client import OUTCOMES, RESET, Attempt, Outcome

BIN_S = 0.02


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run_figures(attempts: list[Attempt], t_signal: float, t_exit: float, nominal_s: float,
                refused_first: float | None, last_accept: float | None,
                pre_stop_s: float = 0.0, logged_exit_s: float | None = None) -> dict[str, Any]:
    """Figures: times in seconds relative to the signal unless noted.

    Work left: every request written before the server was due to stop accepting (the
    signal, or the end of a pre-stop delay the server was given), at its nominal end.
    Drain overhead is the drain time beyond it.
    """
    counts = Counter(a.outcome for a in attempts)
    after = [a for a in attempts if a.end >= t_signal]
    cutoff = t_signal + pre_stop_s
    in_flight = [a for a in attempts if a.start < t_signal and (a.end >= t_signal or not a.end)]
    due = [a for a in attempts if a.start < cutoff and a.outcome != Outcome.REFUSED]
    work_left = max((a.start + nominal_s - t_signal for a in due), default=0.0)
    work_left = max(work_left, 0.0)
    drain_s = t_exit - t_signal
    ok_after = [a for a in after if a.outcome == Outcome.OK]
    before = _before_signal(attempts, t_signal, nominal_s)
    refused_times = [a.end for a in attempts if a.outcome == Outcome.REFUSED
                     and a.end >= t_signal]
    if refused_first is not None:
        refused_times.append(refused_first)
    listener = min(refused_times, default=None)
    return {
        "counts": {o.value: counts.get(o.value, 0) for o in OUTCOMES},
        "attempts": len(attempts),
        "lost": counts.get(Outcome.LOST.value, 0),
        "race": counts.get(Outcome.RACE.value, 0),
        "in_flight_at_signal": len(in_flight),
        "drain_s": round(drain_s, 4),
        "work_left_s": round(work_left, 4),
        "overhead_ms": round((drain_s - work_left) * 1000, 1),
        "runtime_overhead_ms": None if logged_exit_s is None
        else round((logged_exit_s - work_left) * 1000, 1),
        "last_ok_s": round(max((a.end for a in ok_after), default=t_signal) - t_signal, 4),
        "listener_closed_s": None if listener is None else round(listener - t_signal, 4),
        "last_accept_s": None if last_accept is None else round(last_accept - t_signal, 4),
        "drain_responses": len(ok_after),
        "drain_conn_close": sum(a.conn_close for a in ok_after),
        "p50_ms": _round(percentile(before, 0.50)),
        "p99_ms": _round(percentile(before, 0.99)),
        "max_ms": _round(max(before, default=None)),
        # Requests written long before the signal and still unanswered at it (a connect
        # the server's full accept queue left to the client's SYN retries, say): counted
        # above at the age they had reached, a lower bound.
        "unfinished_before": sum(1 for a in attempts if _straggler(a, t_signal, nominal_s)),
        # The first request of each connection (its connect included) against the later
        # ones: the first wave of connections arrives within one handler time.
        "latency_ms": {
            "first": _latency([a for a in attempts if not a.reused], t_signal, nominal_s),
            "later": _latency([a for a in attempts if a.reused], t_signal, nominal_s),
        },
    }


def restart_figures(attempts: list[Attempt], t_signal: float, window_s: float,
                    hand_over_s: float | None, nominal_s: float) -> dict[str, Any]:
    """A restart run's own figures (bench/restart.py): resets, the 200s after the signal,
    latency of the requests started in the window (and in the hand-over, when the server
    says when it ended), and the pause: the longest of those beyond the nominal time."""
    def started_within(seconds: float) -> list[float]:
        return [(a.end - a.start) * 1000 for a in attempts if a.outcome == Outcome.OK
                and t_signal <= a.start <= t_signal + seconds]

    window = started_within(window_s)
    return {
        "reset": sum(a.error == RESET for a in attempts),
        "ok_after_signal": sum(a.outcome == Outcome.OK and a.start >= t_signal
                               for a in attempts),
        "window_s": window_s,
        "window_ms": _spread(window),
        "hand_over_ms": None if hand_over_s is None else _spread(started_within(hand_over_s)),
        "pause_ms": None if not window else round(max(window) - nominal_s * 1000, 1),
        "reconnections": reconnections(attempts, t_signal),
    }


def reconnections(attempts: list[Attempt], t_signal: float) -> int:
    """Connections the clients had to open again after the signal: attempts on a fresh
    connection by a client that had one before (its first attempt is `i-0`). A client that
    sends `Connection: close` itself opens one per request: the figure is the keep-alive
    scenarios'."""
    return sum(not a.reused and a.start >= t_signal and not a.req_id.endswith("-0")
               for a in attempts)


def _spread(ms: list[float]) -> dict[str, Any]:
    return {"n": len(ms), "p50": _round(percentile(ms, 0.50)),
            "p99": _round(percentile(ms, 0.99)), "max": _round(max(ms, default=None))}


STRAGGLER_MARGIN_S = 0.2


def _straggler(a: Attempt, t_signal: float, nominal_s: float) -> bool:
    return (a.start < t_signal - nominal_s - STRAGGLER_MARGIN_S and a.outcome != Outcome.REFUSED
            and not (a.end and a.end < t_signal))


def _before_signal(attempts: list[Attempt], t_signal: float, nominal_s: float) -> list[float]:
    """Latency in ms of the requests answered before the signal, and of the stragglers
    (see `_straggler`) at their age at the signal: leaving those out would make a server
    that keeps clients waiting to connect look faster than one that accepts them all."""
    done = [(a.end - a.start) * 1000 for a in attempts
            if a.outcome == Outcome.OK and a.end < t_signal]
    late = [(t_signal - a.start) * 1000 for a in attempts if _straggler(a, t_signal, nominal_s)]
    return done + late


def _latency(attempts: list[Attempt], t_signal: float, nominal_s: float) -> dict[str, Any]:
    return _spread(_before_signal(attempts, t_signal, nominal_s))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def timeline(attempts: list[Attempt], t_signal: float, t_exit: float,
             before_s: float = 1.0, after_s: float = 0.5) -> dict[str, Any]:
    """In-flight attempts and outcomes per bin of BIN_S, from before the signal to exit."""
    lo = -before_s
    bins = int(((t_exit - t_signal) + after_s - lo) / BIN_S) + 1
    delta = [0] * (bins + 1)
    ends: dict[str, list[int]] = {o.value: [0] * bins for o in OUTCOMES}
    for a in attempts:
        start = int((a.start - t_signal - lo) / BIN_S)
        end = int(((a.end or t_exit) - t_signal - lo) / BIN_S)
        if end < 0 or start >= bins:
            continue
        delta[max(start, 0)] += 1
        delta[min(end, bins)] -= 1
        if 0 <= end < bins and a.outcome:
            ends[a.outcome][end] += 1
    in_flight, level = [], 0
    for value in delta[:bins]:
        level += value
        in_flight.append(level)
    return {"t0": lo, "bin_s": BIN_S, "in_flight": in_flight, "ends": ends}


def summarize(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
