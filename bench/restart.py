"""The restart scenarios of `bench drain`: clients under load, SIGHUP, each
server's own restart, every attempt classified as in the drain runs.

    python -m bench drain --scenario restart,restart-close --connections 50,500 --repeat 10
        [--servers graceful-uvloop,uvicorn-workers2,...] [--checkpoint]

graceful hands its sockets to a successor and exits once the successor serves
(graceful/restart.py); each peer restarts the way its own SIGHUP does (gunicorn's HUP,
uvicorn's rolling restart of --workers 2, granian, hypercorn; uvicorn with one worker
exits). The window is the same (--window, 4 s) after the signal for every server; graceful's
hand-over (the signal to the old process's exit) lies within it and is also given alone.
Per run, beside the drain run's figures: the resets among the outcomes; latency (p50, p99,
max) of the requests started in the window and in the hand-over; the pause (the longest of
those beyond the handler's time); with --checkpoint, whether the counter the app keeps
(bench/restart_app.py) equals the 200s the clients got.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
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
from bench.servers import ROOT, Launch, answers
from graceful.processes import alive

AFTER_S = 1.0  # the load goes on this long after the window: the restarted server serves
ATTEMPT_TIMEOUT_S = 30.0


async def run_restart(spec: RunSpec, out: Path, progress: Progress | None) -> dict[str, Any]:
    if spec.control:
        return await run_control(spec, out, progress)
    sc, window = spec.scenario, spec.window_s
    graceful = spec.server.port_from_log
    checkpoint = out / "logs" / f"{spec.slug}.ckpt"
    launch = Launch(port=0, drain_timeout_s=sc.drain_timeout_s,
                    peer_defaults=spec.peer_defaults)
    if graceful and spec.checkpoint:
        for path in (checkpoint, checkpoint.with_name(checkpoint.name + ".prev")):
            path.unlink(missing_ok=True)
        launch = dataclasses.replace(launch, graceful_app="bench.restart_app:counting_app",
                                     graceful_args=("--checkpoint", str(checkpoint)))
    loaded = await start_under_load(spec, out, launch, ATTEMPT_TIMEOUT_S, progress)
    proc, state = loaded.proc, loaded.state
    successor, hand_over_s = 0, None
    try:
        t_signal = time.monotonic()
        proc.signal(signal.SIGHUP)
        if graceful:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.process.wait(), window + sc.drain_timeout_s)
            if proc.process.returncode is not None:
                hand_over_s = time.monotonic() - t_signal
            successor = _successor(proc.log)
        await asyncio.sleep(max(0.0, t_signal + window + AFTER_S - time.monotonic()))
        serving = await answers(proc.port)
        exit_code = proc.process.returncode
        state.stopped = True
        await finish_clients(loaded.tasks, grace_s=10.0)
        if successor:
            await _stop(successor)
    finally:
        if successor:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(successor, signal.SIGKILL)
        seen = await stop_load(loaded)
    t_end = t_signal + (hand_over_s or window)
    result = {
        **run_head(spec), "signal": "SIGHUP", "control": False,
        "checkpoint": spec.checkpoint and graceful,
        "exit_code": exit_code, "killed": False, "orphans": False, "seen_by_app": len(seen),
        "serving_after": serving, "successor_pid": successor or None,
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
        "exit_code": None, "serving_after": serving, "hand_over_s": None,
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
            + (f" count_exact={r['count_exact']}" if r["checkpoint"] else "")
            + ("" if r["serving_after"] else " NOT SERVING AFTER"))


def _successor(log: Path) -> int:
    """The pid graceful handed over to (the run's one restart.ready event), 0 if none."""
    for event in log_events(log):
        if event.get("event") == "restart.ready":
            return int(event["successor_pid"])
    return 0


async def _stop(pid: int, timeout_s: float = 15.0) -> None:
    """SIGTERM a successor (not our child: the old process started it) and wait until it
    has gone; the SIGKILL after is in the caller's finally."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout_s
    while alive(pid) and time.monotonic() < end:
        await asyncio.sleep(0.01)



def _counted(checkpoint: Path, log: Path, ok: int) -> dict[str, Any]:
    """The counter in the successor's final checkpoint against the 200s, and the pause the
    successor logged (restart.took_over waited_s: the old process's drain and flush)."""
    shown = subprocess.run([sys.executable, "-m", "graceful", "checkpoint", "show",
                            str(checkpoint)], capture_output=True, text=True, cwd=ROOT,
                           check=False)
    count = None
    with contextlib.suppress(ValueError):
        count = json.loads(shown.stdout).get("count")
    took = [e["waited_s"] for e in log_events(log) if e.get("event") == "restart.took_over"]
    return {"count": count, "count_exact": count == ok,
            "took_over_waited_ms": round(took[0] * 1000, 1) if took else None}
