"""One drain run: serve, load, signal, watch the process go, classify, figure."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.client import Attempt, Outcome, classify
from bench.figures import run_figures, timeline
from bench.load import LoadConfig, LoadState, finish_clients, probe_listener, start_clients
from bench.progress import Progress
from bench.scenarios import Scenario
from bench.servers import Launch, Proc, Server, start
from graceful.host.processes import alive

SIGNALS = {"TERM": signal.SIGTERM, "INT": signal.SIGINT}
RESTART_SIGNAL = "HUP"  # the restart scenario's (bench/restart.py)
if hasattr(signal, "CTRL_BREAK_EVENT"):  # Windows: the console event graceful maps to a stop
    SIGNALS = {"BREAK": signal.CTRL_BREAK_EVENT}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    server: Server
    scenario: Scenario
    connections: int
    sig: str
    repeat: int
    peer_defaults: bool = False
    checkpoint: bool = False  # restart scenario: graceful keeps a counter in a checkpoint
    control: bool = False  # restart scenario: the same load and window, no signal
    window_s: float = 4.0  # restart scenario: the requests started this long after it count

    @property
    def label(self) -> str:
        return (f"{self.server.name} {self.scenario.name} c={self.connections} "
                f"{'no signal' if self.control else 'SIG' + self.sig} #{self.repeat + 1}")

    @property
    def slug(self) -> str:
        return (f"{self.server.name}-{self.scenario.name}-c{self.connections}-"
                f"{'control' if self.control else self.sig}-{self.repeat + 1}")


@dataclasses.dataclass
class Loaded:
    """A server started and under load: what a run's signal and figures work on."""

    proc: Proc
    state: LoadState
    tasks: list[asyncio.Task[None]]
    seen_log: Path


async def start_under_load(spec: RunSpec, out: Path, launch: Launch,
                           attempt_timeout_s: float, progress: Progress | None) -> Loaded:
    """Start the server, start the clients, and return after the scenario's warm-up."""
    sc = spec.scenario
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    seen_log = logs / f"{spec.slug}.seen"
    seen_log.unlink(missing_ok=True)
    proc = await start(spec.server, launch, logs / f"{spec.slug}.log", seen_log)
    cfg = LoadConfig(port=proc.port, connections=spec.connections, request=sc.request,
                     stagger_s=sc.nominal_s, attempt_timeout_s=attempt_timeout_s)
    state = LoadState()
    loaded = Loaded(proc, state, start_clients(cfg, state), seen_log)
    try:
        await _warm_up(sc.warmup_s, state, spec.label, progress)
    except BaseException:
        await stop_load(loaded)
        raise
    return loaded


async def stop_load(loaded: Loaded, grace_s: float = 1.0) -> set[str]:
    """Stop the clients, kill what is left of the server's group, classify every attempt;
    the request ids the app saw."""
    loaded.state.stopped = True
    await loaded.proc.kill_group()
    await finish_clients(loaded.tasks, grace_s=grace_s)
    seen = _read_seen(loaded.seen_log)
    for a in loaded.state.attempts:
        a.outcome = classify(a, seen).value
    return seen


async def run_one(spec: RunSpec, out: Path, progress: Progress | None = None,
                  attempt_timeout_s: float | None = None) -> dict[str, Any]:
    sc = spec.scenario
    if sc.restart:
        from bench.restart import run_restart

        return await run_restart(spec, out, progress)
    launch = Launch(port=0, drain_timeout_s=sc.drain_timeout_s,
                    peer_defaults=spec.peer_defaults, pre_stop_s=sc.pre_stop_s)
    kill_after = sc.drain_timeout_s + sc.pre_stop_s + sc.nominal_s + 8.0
    loaded = await start_under_load(spec, out, launch,
                                    attempt_timeout_s or kill_after + sc.nominal_s + 5,
                                    progress)
    proc, state = loaded.proc, loaded.state
    killed = orphans = False
    try:
        # graceful's workers have process groups of their own: known by pid, for _outlived
        # (its children only, one read: a scan of /proc here would hold the clients' answers
        # back until after the signal, where they would count as drain responses)
        below = _children(proc.pid)
        t_signal, wall_signal = time.monotonic(), time.time()
        proc.signal(SIGNALS[spec.sig])
        prober = asyncio.create_task(probe_listener(proc.port, state))
        try:
            await asyncio.wait_for(proc.process.wait(), kill_after)
        except TimeoutError:
            killed = True
            await proc.kill_group()
        t_exit = time.monotonic()
        state.stopped = True
        orphans = await _outlived(proc.pid, 0.2, below)
        await proc.kill_group()
        for pid in below:  # outside the group, no longer below the pid once it exited
            if alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        last_accept, refused_first = await prober
        await finish_clients(loaded.tasks, grace_s=5.0)
    finally:
        seen = await stop_load(loaded)
    logged_exit = _logged_exit(proc.log, wall_signal)
    stop_known = _logged_stop(proc.log, wall_signal)
    figures = run_figures(state.attempts, t_signal, t_exit, sc.nominal_s, refused_first,
                          last_accept, sc.pre_stop_s if spec.server.pre_stop else 0.0,
                          logged_exit)
    result = {
        **run_head(spec), "exit_code": proc.process.returncode,
        "killed": killed, "orphans": orphans, "seen_by_app": len(seen), **figures,
        "logged_exit_s": logged_exit,
        "stop_known_s": stop_known,
        "keep_alive_after_stop": None if stop_known is None
        else _keep_alive_after(state.attempts, t_signal + stop_known),
        "timeline": timeline(state.attempts, t_signal, t_exit),
    }
    if progress is not None:
        progress.finish(spec.label, one_line(result))
    return result


def run_head(spec: RunSpec) -> dict[str, Any]:
    """What identifies a run in its result."""
    return {"server": spec.server.name, "scenario": spec.scenario.name,
            "connections": spec.connections, "signal": f"SIG{spec.sig}",
            "repeat": spec.repeat + 1, "peer_defaults": spec.peer_defaults,
            "nominal_ms": round(spec.scenario.nominal_s * 1000, 1)}


def one_line(r: dict[str, Any]) -> str:
    c = r["counts"]
    return (f"ok={c['ok']} lost={r['lost']} race={r['race']} refused={c['refused']} "
            f"5xx={c['5xx']} timeout={c['timeout']} drain={r['drain_s']:.3f}s "
            f"overhead={r['overhead_ms']:.0f}ms exit={r['exit_code']}"
            + (" KILLED" if r["killed"] else ""))


async def _warm_up(seconds: float, state: LoadState, label: str,
                   progress: Progress | None) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if progress is not None:
            progress.status(label, f"warm-up {left:4.1f}s in_flight={state.in_flight} "
                                   f"attempts={len(state.attempts)}")
        await asyncio.sleep(min(left, 0.25))


def _logged_stop(log: Path, wall_signal: float) -> float | None:
    """Seconds from the signal to the first ``stop.requested`` in the server's log: from
    then on the server knows, and (the client's clock being the same machine's) a request
    written after it must be answered with Connection: close. Responses to requests
    written between the signal and this moment (the supervisor forwarding the stop to its
    workers under load) may rightly still say keep-alive."""
    for event in log_events(log):
        if event.get("event") == "stop.requested":
            return _seconds_after(event, wall_signal)
    return None


def _keep_alive_after(attempts: Sequence[Attempt], t_known: float) -> int:
    """Whole responses without Connection: close to requests written once the server knew
    it was stopping: a defect of the server's, whatever the timing."""
    return sum(1 for a in attempts
               if a.outcome == Outcome.OK and a.start >= t_known and not a.conn_close)


def _seconds_after(event: dict[str, Any], wall: float) -> float | None:
    with contextlib.suppress(AttributeError, KeyError, ValueError):
        stamp = event["timestamp"].replace("Z", "+00:00")
        return round(datetime.datetime.fromisoformat(stamp).timestamp() - wall, 4)
    return None


def _logged_exit(log: Path, wall_signal: float) -> float | None:
    """Seconds from the signal to the server's own ``process.exit`` log event (graceful's
    JSON log): what is left of the drain time after it is the interpreter's teardown."""
    for event in reversed(log_events(log)):
        if event.get("event") == "process.exit":
            return _seconds_after(event, wall_signal)
    return None


def log_events(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of a server's log (graceful's), in order."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


async def _outlived(pgid: int, grace_s: float, pids: Sequence[int] = ()) -> bool:
    """True if a process the server started (in its group, or one of ``pids``, its
    processes at the signal) is still running ``grace_s`` after it exited (a worker that
    is merely finishing its own exit is given that long)."""
    end = time.monotonic() + grace_s
    while _group_alive(pgid) or any(alive(pid) for pid in pids):
        if time.monotonic() >= end:
            return True
        await asyncio.sleep(0.01)
    return False


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s children (Linux), [] where /proc does not tell."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(each) for each in text.split()]


def _group_alive(pgid: int) -> bool:
    """True if a process of the group, other than zombies, is still running."""
    proc = Path("/proc")
    if not proc.is_dir():
        if not hasattr(os, "killpg"):  # Windows: the server is ended by its pid alone
            return False
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _read_seen(path: Path) -> set[str]:
    with contextlib.suppress(FileNotFoundError):
        return set(path.read_text().split())
    return set()
