"""The restart scenarios of `bench drain`: clients under load, SIGHUP, each server's own
restart, every attempt classified as in the drain runs.

    python -m bench drain --scenario restart,restart-close --connections 50,500 --repeat 10
        [--servers graceful-uvloop-workers2,uvicorn-workers2,...] [--checkpoint]

graceful's supervisor keeps its pid: on SIGHUP it starts new workers and, once they are
ready, the old ones drain (graceful/supervisor/rolling.py); the run checks that the pid it
started still serves after the window, and reads the restart's outcome from the log
(`restart.done`: the new `workers` and the `replaced` ones). Each peer restarts the way its
own SIGHUP does (bench/servers.py says which for each; uvicorn with one worker exits).
The window is the same (--window, 4 s) after the signal for every server; graceful's
hand-over (the signal to the exit of the last old worker) lies within it and is also given
alone. Per run, beside the drain run's figures: the resets among the outcomes; latency
(p50, p99, max) of the requests started in the window and in the hand-over; the pause (the
longest of those beyond the handler's time); with --checkpoint (graceful with one worker),
whether the counter the app keeps (bench/restart_app.py) equals the 200s the clients got,
and the new worker's wait for the old one's final flush (`restart.took_over` waited_s).
After the window every server still running gets SIGTERM: its exit code is the run's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.drain import RunSpec, log_events, run_head, start_under_load, stop_load
from bench.figures import restart_figures, run_figures, timeline
from bench.load import finish_clients
from bench.progress import Progress
from bench.servers import ROOT, Launch, Proc, answers
from graceful.host.processes import alive

AFTER_S = 1.0  # the load goes on this long after the window: the restarted server serves
ATTEMPT_TIMEOUT_S = 30.0
# restart.done comes once the new workers have stayed up rolling.SETTLE_S (2 s) after the
# old ones left: waited for this long after the window
SETTLE_WAIT_S = 15.0


async def run_restart(spec: RunSpec, out: Path, progress: Progress | None) -> dict[str, Any]:
    if spec.control:
        return await run_control(spec, out, progress)
    sc, window = spec.scenario, spec.window_s
    graceful = spec.server.port_from_log
    checkpoint = out / "logs" / f"{spec.slug}.ckpt"
    launch = Launch(port=0, drain_timeout_s=sc.drain_timeout_s,
                    peer_defaults=spec.peer_defaults)
    counting = graceful and spec.checkpoint
    if counting:
        for path in (checkpoint, checkpoint.with_name(checkpoint.name + ".prev")):
            path.unlink(missing_ok=True)
        launch = dataclasses.replace(launch, graceful_app="bench.restart_app:counting_app",
                                     graceful_args=("--checkpoint", str(checkpoint)))
    loaded = await start_under_load(spec, out, launch, ATTEMPT_TIMEOUT_S, progress)
    proc, state = loaded.proc, loaded.state
    old = _serving_workers(proc.log) if graceful else []
    hand_over_s = exited_on_restart = None
    outcome: dict[str, Any] = {}
    try:
        t_signal = time.monotonic()
        proc.signal(signal.SIGHUP)
        if graceful:
            hand_over_s = await _gone(old, t_signal, window + sc.drain_timeout_s)
        await asyncio.sleep(max(0.0, t_signal + window + AFTER_S - time.monotonic()))
        serving = await answers(proc.port)
        exited_on_restart = proc.process.returncode
        if graceful:
            outcome = await _restart_outcome(proc.log, SETTLE_WAIT_S)
        state.stopped = True
        await finish_clients(loaded.tasks, grace_s=10.0)
        exit_code = await _stop(proc) if exited_on_restart is None else exited_on_restart
    finally:
        seen = await stop_load(loaded)
    t_end = t_signal + (hand_over_s or window)
    result = {
        **run_head(spec), "signal": "SIGHUP", "control": False, "checkpoint": counting,
        "workers": spec.server.workers, "pid": proc.pid,
        # the pid the harness started still runs after the window (a supervisor's restart);
        # False where the server exited on SIGHUP
        "pid_kept": exited_on_restart is None,
        "exit_code": exit_code, "killed": False, "orphans": False, "seen_by_app": len(seen),
        "serving_after": serving, "old_workers": old or None,
        **({"restart": outcome} if graceful else {}),
        "hand_over_s": None if hand_over_s is None else round(hand_over_s, 4),
        **run_figures(state.attempts, t_signal, t_end, sc.nominal_s, None, None),
        **restart_figures(state.attempts, t_signal, window, hand_over_s, sc.nominal_s),
        "timeline": timeline(state.attempts, t_signal, t_end),
    }
    if result["checkpoint"]:
        result |= _counted(checkpoint, proc.log, result["counts"]["ok"])
    if progress is not None:
        progress.finish(spec.label, one_line(result))
    return result


async def run_control(spec: RunSpec, out: Path, progress: Progress | None) -> dict[str, Any]:
    """The same server, load and timing as a restart run, and no signal: the latency of
    the window when nothing restarts. One process serving a new connection per request to
    clients that all wait the same handler time gets slower by itself (the clients bunch
    into waves it serves one after the other); this run tells that apart from what the
    restart costs."""
    sc, window = spec.scenario, spec.window_s
    launch = Launch(port=0, drain_timeout_s=sc.drain_timeout_s,
                    peer_defaults=spec.peer_defaults)
    loaded = await start_under_load(spec, out, launch, ATTEMPT_TIMEOUT_S, progress)
    try:
        t_mark = time.monotonic()
        await asyncio.sleep(window + AFTER_S)
        serving = await answers(loaded.proc.port)
        loaded.state.stopped = True
        await finish_clients(loaded.tasks, grace_s=10.0)
    finally:
        await stop_load(loaded)
    attempts = loaded.state.attempts
    result = {
        **run_head(spec), "signal": "SIGHUP", "control": True, "checkpoint": False,
        "workers": spec.server.workers, "exit_code": None, "serving_after": serving,
        "hand_over_s": None,
        **run_figures(attempts, t_mark, t_mark + window, sc.nominal_s, None, None),
        **restart_figures(attempts, t_mark, window, None, sc.nominal_s),
    }
    if progress is not None:
        progress.finish(spec.label, one_line(result))
    return result


def one_line(r: dict[str, Any]) -> str:
    c, w = r["counts"], r["window_ms"]
    return (f"ok={c['ok']} lost={r['lost']} race={r['race']} refused={c['refused']} "
            f"reset={r['reset']} window p99={w.get('p99')} max={w.get('max')} "
            f"pause={r['pause_ms']}ms hand-over={r['hand_over_s']}s"
            f" reconnections={r.get('reconnections')}"
            + (f" restart={r['restart'].get('outcome')}" if r.get("restart") else "")
            + ("" if r.get("pid_kept", True) else " EXITED")
            + (f" count_exact={r['count_exact']}" if r["checkpoint"] else "")
            + ("" if r["serving_after"] else " NOT SERVING AFTER"))


def _serving_workers(log: Path) -> list[int]:
    """The pids of graceful's workers before the signal (`supervisor.ready`), [] if none."""
    for event in log_events(log):
        if event.get("event") == "supervisor.ready":
            return [int(pid) for pid in event.get("workers", ())]
    return []


async def _gone(pids: list[int], t_signal: float, timeout_s: float) -> float | None:
    """Seconds from the signal until every one of ``pids`` has exited (the supervisor reaps
    its workers at once), None if they have not within ``timeout_s`` or none were known."""
    if not pids:
        return None
    end = t_signal + timeout_s
    while any(alive(pid) for pid in pids):
        if time.monotonic() >= end:
            return None
        await asyncio.sleep(0.005)
    return time.monotonic() - t_signal


async def _restart_outcome(log: Path, timeout_s: float) -> dict[str, Any]:
    """The supervisor's `restart.done` or `restart.failed` (logged once the new workers
    have stayed up for the settle time): outcome, the new workers, the replaced ones."""
    end = time.monotonic() + timeout_s
    while True:
        for event in log_events(log):
            if event.get("event") in ("restart.done", "restart.failed"):
                return {k: event.get(k) for k in ("outcome", "workers", "replaced", "took_s",
                                                   "reason", "pid")}
        if time.monotonic() >= end:
            return {"outcome": None, "reason": "no restart.done nor restart.failed logged"}
        await asyncio.sleep(0.05)


async def _stop(proc: Proc, timeout_s: float = 20.0) -> int | None:
    """SIGTERM the server (a supervisor: its workers drain, no request in flight by now)
    and its exit code; None if it had to be killed (the caller's finally kills the group)."""
    with contextlib.suppress(ProcessLookupError):
        proc.signal(signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(proc.process.wait(), timeout_s)
    return proc.process.returncode


def _counted(checkpoint: Path, log: Path, ok: int) -> dict[str, Any]:
    """The counter in the final checkpoint (written by the new worker's stop) against the
    200s, and the pause the new worker logged (restart.took_over waited_s: from its ready to
    the old worker's exit, its drain and final flush, before it accepts)."""
    shown = subprocess.run([sys.executable, "-m", "graceful", "checkpoint", "show",
                            str(checkpoint)], capture_output=True, text=True, cwd=ROOT,
                           check=False)
    count = None
    with contextlib.suppress(ValueError):
        count = json.loads(shown.stdout).get("count")
    took = [e["waited_s"] for e in log_events(log) if e.get("event") == "restart.took_over"]
    return {"count": count, "count_exact": count == ok,
            "took_over_waited_ms": round(took[0] * 1000, 1) if took else None}
