"""Reloads of graceful with 2 workers on Windows (under Wine), under load:

    python -m bench wine-reload --reloads 10 --connections 50 [--target service|console]
        [--loop asyncio,winloop] [--latency-ms 300] [--control 5] [--out DIR]

GRACEFUL_WINE_ROOT names the Wine prefix (scripts/wine-setup.sh). For each loop: graceful
serves bench/wine_reload_app.py with `--workers 2` as a Windows service (bench/wine_target.py;
`--target console`: `graceful serve` with `graceful restart --pid`); half the clients
keep their connection alive, half open a new one per request (bench/load.py, the clients
of the POSIX restart runs), all in this Linux process on 127.0.0.1. Then, one after the
other, `--reloads` times: a control window of `--control` seconds with nothing happening,
then `graceful service reload` (SCM control 129) until it exits, which it does once the
new workers have served for the supervisor's settle time (`restart.done`).

Per reload: the command's exit code, the outcome the supervisor logged, the service's pid
(as the supervisor logs it, and as the SCM gives it at the end); every request that
started from the control window's start to the next reload's control window, classified
as the POSIX runs are (bench/client.py: refused, lost, keep-alive race, reset, timeout,
5xx); and the p99 latency of the 200s that started in the control window and of those
that started in the reload window (the command's launch to its exit: the interpreters'
start, the hand-over, and the settle time).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from bench.client import RESET, Attempt, Outcome, Request, classify
from bench.figures import percentile
from bench.load import LoadConfig, LoadState, finish_clients, start_clients
from bench.wine_target import Console, Service, events, prepare, wine_env

BAD = ("refused", "lost", "keepalive_race", "reset", "timeout", "5xx")
TARGET_P99_RATIO = 2.0


@dataclasses.dataclass
class Reload:
    control_at: float
    sent_at: float
    back_at: float = 0.0
    code: int | None = None
    said: str = ""


async def run(loop: str, target: str, reloads: int, connections: int, latency_ms: float,
              control_s: float, out: Path) -> dict[str, Any]:
    work = out / f"{target}-{loop}"
    work.mkdir(parents=True, exist_ok=True)
    for old in [*work.glob("seen*"), *work.glob("*.log")]:
        old.unlink()
    env = wine_env()
    prepare(env)
    served = (Service if target == "service" else Console)(env, work, loop)
    label = f"{target} {loop}"
    _say(f"{label}: starting")
    await served.start()
    states = {"keep-alive": LoadState(), "new-connection": LoadState()}
    tasks = []
    for kind, state in states.items():
        cfg = LoadConfig(port=served.port, connections=connections // 2,
                         request=Request(f"/work?ms={latency_ms:g}",
                                         close=kind == "new-connection"),
                         stagger_s=latency_ms / 1000, attempt_timeout_s=60.0)
        tasks += start_clients(cfg, state)
    done: list[Reload] = []
    try:
        await asyncio.sleep(latency_ms / 1000 + 2.0)  # every client started, the loop warm
        for i in range(reloads):
            reload = Reload(control_at=time.monotonic(), sent_at=0.0)
            await asyncio.sleep(control_s)
            reload.sent_at = time.monotonic()
            reload.code, reload.said = await served.reload()
            reload.back_at = time.monotonic()
            done.append(reload)
            _say(f"{label}: reload {i + 1}/{reloads} exit {reload.code} in "
                          f"{reload.back_at - reload.sent_at:.1f}s")
        await asyncio.sleep(1.0)
        ended_at = time.monotonic()
        os_pid = await served.os_pid()
    finally:
        for state in states.values():
            state.stopped = True
        await finish_clients(tasks, grace_s=30.0)
        exit_code = await served.stop()
    seen = _seen(served.seen)
    for state in states.values():
        for a in state.attempts:
            a.outcome = classify(a, seen).value
    attempts = [a for state in states.values() for a in state.attempts]
    logged = events(served.log)
    outcomes = [e for e in logged if e.get("event") in ("restart.done", "restart.failed")]
    rows = [_row(i, r, done, ended_at, attempts, states, outcomes, served.pid)
            for i, r in enumerate(done)]
    return {"target": target, "loop": loop, "connections": connections,
            "latency_ms": latency_ms, "control_s": control_s, "pid": served.pid,
            "scm_pid_at_end": os_pid, "pid_kept": os_pid == served.pid,
            "exit_code": exit_code, "reloads": rows, "totals": _totals(rows, attempts)}


def _say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def _row(i: int, r: Reload, done: list[Reload], ended_at: float, attempts: list[Attempt],
         states: dict[str, LoadState], outcomes: list[dict[str, Any]],
         pid: int) -> dict[str, Any]:
    until = done[i + 1].control_at if i + 1 < len(done) else ended_at
    mine = [a for a in attempts if r.control_at <= a.start < until]
    outcome = outcomes[i] if i < len(outcomes) else {}
    control = _p(attempts, r.control_at, r.sent_at)
    window = _p(attempts, r.sent_at, r.back_at)
    return {
        "reload": i + 1, "exit": r.code, "said": r.said.strip()[-300:],
        "outcome": outcome.get("event"), "took_s": outcome.get("took_s"),
        "workers": outcome.get("workers"), "replaced": outcome.get("replaced"),
        "pid_kept": outcome.get("pid") == pid, "command_s": round(r.back_at - r.sent_at, 2),
        "counts": _counts(mine),
        "by_kind": {kind: _counts([a for a in s.attempts if r.control_at <= a.start < until])
                    for kind, s in states.items()},
        "control_ms": control, "window_ms": window,
        "p99_ratio": (round(window["p99"] / control["p99"], 3)
                      if window["p99"] and control["p99"] else None),
    }


def _counts(attempts: list[Attempt]) -> dict[str, int]:
    counts = {o.value: 0 for o in Outcome}
    for a in attempts:
        counts[a.outcome] += 1
    counts["reset"] = sum(a.error == RESET for a in attempts)
    return counts


def _p(attempts: list[Attempt], start: float, end: float) -> dict[str, Any]:
    ms = [(a.end - a.start) * 1000 for a in attempts
          if a.outcome == Outcome.OK and start <= a.start < end]
    return {"n": len(ms), "p50": _round(percentile(ms, 0.5)), "p99": _round(percentile(ms, 0.99)),
            "max": _round(max(ms, default=None))}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _totals(rows: list[dict[str, Any]], attempts: list[Attempt]) -> dict[str, Any]:
    ratios = [r["p99_ratio"] for r in rows if r["p99_ratio"] is not None]
    return {
        "reloads": len(rows),
        "reloaded": sum(r["exit"] == 0 and r["outcome"] == "restart.done" for r in rows),
        "clean": sum(all(r["counts"][k] == 0 for k in BAD) for r in rows),
        "within_p99_target": sum(x <= TARGET_P99_RATIO for x in ratios),
        "p99_ratio_max": max(ratios, default=None),
        "counts": _counts(attempts),
    }


def _seen(stem: Path) -> set[str]:
    ids: set[str] = set()
    for path in stem.parent.glob(stem.name + ".*"):
        ids.update(path.read_text(errors="replace").split())
    return ids


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| target | loop | reload | exit | ok | refused | lost | reset | race | "
             "timeout | control p99 ms | window p99 ms | ratio | pid kept | reload s |",
             "|" + "---|" * 15]
    for res in results:
        for r in res["reloads"]:
            c = r["counts"]
            lines.append(
                f"| {res['target']} | {res['loop']} | {r['reload']} | {r['exit']} | "
                f"{c['ok']} | {c['refused']} | {c['lost']} | {c['reset']} | "
                f"{c['keepalive_race']} | {c['timeout']} | {r['control_ms']['p99']} | "
                f"{r['window_ms']['p99']} | {r['p99_ratio']} | {r['pid_kept']} | "
                f"{r['command_s']} |")
    return "\n".join(lines)


def summary(results: list[dict[str, Any]]) -> str:
    lines = ["| target | loop | reloads ok | clean (0 refused, lost, reset, race) | "
             f"p99 ratio ≤ {TARGET_P99_RATIO:g} | ratio max | requests | service pid kept |",
             "|" + "---|" * 8]
    for res in results:
        t = res["totals"]
        lines.append(
            f"| {res['target']} | {res['loop']} | {t['reloaded']}/{t['reloads']} | "
            f"{t['clean']}/{t['reloads']} | {t['within_p99_target']}/{t['reloads']} | "
            f"{t['p99_ratio_max']} | {sum(t['counts'][k] for k in ('ok', *BAD[:2]))} | "
            f"{res['pid_kept'] and all(r['pid_kept'] for r in res['reloads'])} |")
    return "\n".join(lines)
