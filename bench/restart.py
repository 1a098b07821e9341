"""Restart runs (issue 15): clients under load, SIGHUP, the hand-over, every attempt
classified as in the drain runs.

    python -m bench.restart --connections 50,500 --runs 10 [--checkpoint] [--close]

`--servers` adds the peers, each restarted with its own SIGHUP (gunicorn's HUP with
aiohttp's and uvicorn's worker, uvicorn --workers 2 and with one worker, granian,
hypercorn); their window is the PEER_WINDOW_S after the signal. Per run: the outcomes;
latency (p50, p99, max) of requests answered before the signal and of those that started in
the hand-over window (from the signal to the old process's exit); the pause, the longest
time an attempt in the window waited beyond the handler's own time; with --checkpoint,
whether the counter the app keeps equals the 200s the clients got.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.client import Outcome, Request, classify
from bench.load import LoadConfig, LoadState, finish_clients, start_clients

ROOT = Path(__file__).resolve().parent.parent
HANDLER_MS = 300


PEER_WINDOW_S = 4.0
PEERS = {
    "gunicorn-aiohttp": ("gunicorn-aiohttp", []),
    "gunicorn-uvicorn": ("gunicorn-uvicorn", []),
    "uvicorn-workers2": ("uvicorn", ["--workers", "2"]),
    "uvicorn": ("uvicorn", []),
    "granian": ("granian", []),
    "hypercorn": ("hypercorn", ["-w", "1"]),
}


async def run_peer(name: str, connections: int, close: bool, folder: Path) -> dict[str, Any]:
    from bench.servers import SERVERS, Launch, start

    server_name, extra = PEERS[name]
    server = SERVERS[server_name]
    base = server.argv
    server = dataclasses.replace(server, argv=lambda ln: [*base(ln), *extra])
    seen, log = folder / "seen", folder / "log"
    seen.unlink(missing_ok=True)
    proc = await start(server, Launch(port=0, drain_timeout_s=10.0), log, seen)
    try:
        cfg = LoadConfig(port=proc.port, connections=connections,
                         request=Request(f"/work?ms={HANDLER_MS}", close=close),
                         stagger_s=HANDLER_MS / 1000, attempt_timeout_s=30)
        state = LoadState()
        tasks = start_clients(cfg, state)
        await asyncio.sleep(HANDLER_MS / 1000 + 1.0)
        t_signal = time.monotonic()
        proc.signal(signal.SIGHUP)
        await asyncio.sleep(PEER_WINDOW_S + 1.0)
        t_end = t_signal + PEER_WINDOW_S
        alive = proc.process.returncode is None
        state.stopped = True
        await finish_clients(tasks, grace_s=10.0)
    finally:
        await proc.kill_group()
    return _figures(name, connections, close, False, state, seen, t_signal, t_end,
                    {"alive_after": alive})


def _figures(name: str, connections: int, close: bool, checkpoint: bool, state: LoadState,
             seen: Path, t_signal: float, t_end: float, extra: dict[str, Any]
             ) -> dict[str, Any]:
    ids = set(seen.read_text().split()) if seen.exists() else set()
    for a in state.attempts:
        a.outcome = classify(a, ids).value
    ok = [a for a in state.attempts if a.outcome == Outcome.OK]
    before = [(a.end - a.start) * 1000 for a in ok if a.end < t_signal]
    window = [(a.end - a.start) * 1000 for a in ok if t_signal <= a.start <= t_end]
    after = [a for a in state.attempts if a.start >= t_signal]
    return {
        "server": name, "connections": connections, "checkpoint": checkpoint,
        "clients": "new connection" if close else "keep-alive",
        "counts": dict(Counter(a.outcome for a in state.attempts)),
        "ok_after_signal": sum(a.outcome == Outcome.OK for a in after),
        "window_s": round(t_end - t_signal, 3),
        "before_ms": _spread(before), "window_ms": _spread(window),
        "pause_ms": round(max(window, default=HANDLER_MS) - HANDLER_MS, 1), **extra,
    }


async def run(connections: int, checkpoint: bool, close: bool, folder: Path) -> dict[str, Any]:
    seen, log = folder / "seen", folder / "log"
    seen.unlink(missing_ok=True)
    args = [sys.executable, "-m", "graceful", "serve", "bench.restart_app:counting_app",
            "--port", "0", "--log-format", "json", "--backlog", "4096"]
    state_file = folder / "state.ckpt"
    for path in (state_file, folder / "state.ckpt.prev"):
        path.unlink(missing_ok=True)
    if checkpoint:
        args += ["--checkpoint", str(state_file)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_SEEN_LOG=str(seen))
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=out,
                                start_new_session=True)
    successor = 0
    try:
        port = await _event(log, "server.started", proc.pid)
        cfg = LoadConfig(port=port["port"], connections=connections,
                         request=Request(f"/work?ms={HANDLER_MS}", close=close),
                         stagger_s=HANDLER_MS / 1000, attempt_timeout_s=30)
        state = LoadState()
        tasks = start_clients(cfg, state)
        await asyncio.sleep(HANDLER_MS / 1000 + 1.0)
        t_signal = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        successor = (await _event(log, "restart.ready"))["successor_pid"]
        while proc.poll() is None:
            await asyncio.sleep(0.005)
        t_exit = time.monotonic()
        await asyncio.sleep(1.0)
        state.stopped = True
        await finish_clients(tasks, grace_s=10.0)
        os.kill(successor, signal.SIGTERM)
        while _alive(successor):
            await asyncio.sleep(0.01)
    finally:
        for pid in (proc.pid, successor):
            if pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
        proc.wait(10)
    result = _figures("graceful", connections, close, checkpoint, state, seen, t_signal,
                      t_exit, {"hand_over_s": round(t_exit - t_signal, 3)})
    ok = [a for a in state.attempts if a.outcome == Outcome.OK]
    if checkpoint:
        shown = subprocess.run([sys.executable, "-m", "graceful", "checkpoint", "show",
                                str(state_file)], capture_output=True, text=True, cwd=ROOT)
        result["count_exact"] = json.loads(shown.stdout).get("count") == len(ok)
        took = [e for e in _events(log) if e.get("event") == "restart.took_over"]
        result["took_over_waited_ms"] = round(took[0]["waited_s"] * 1000, 1) if took else None
    return result


def _spread(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {}
    ms = sorted(ms)
    return {"p50": round(statistics.median(ms), 1),
            "p99": round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 1),
            "max": round(ms[-1], 1), "n": len(ms)}


def _events(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


async def _event(log: Path, name: str, pid: int | None = None,
                 timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in _events(log):
            if event.get("event") == name and (pid is None or event.get("pid") == pid):
                return event
        await asyncio.sleep(0.01)
    raise RuntimeError(f"no {name} in {log}:\n{log.read_text()[-2000:]}")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.restart")
    parser.add_argument("--connections", default="50,500")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--checkpoint", action="store_true")
    parser.add_argument("--close", action="store_true", help="a new connection per request")
    parser.add_argument("--servers", default="graceful",
                        help=f"comma list of: graceful, {', '.join(PEERS)}")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        for connections in (int(c) for c in options.connections.split(",")):
            for name in options.servers.split(","):
                for _ in range(options.runs):
                    if name == "graceful":
                        work = run(connections, options.checkpoint, options.close,
                                   Path(folder))
                    else:
                        work = run_peer(name, connections, options.close, Path(folder))
                    print(json.dumps(asyncio.run(work)), flush=True)


if __name__ == "__main__":
    main()
