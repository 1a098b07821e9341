"""The stream scenario: clients hold server-sent-event streams and loop keep-alive GETs; the
server gets SIGTERM; each stream is classified by how it ended.

    python -m bench stream --streams 50,500 --repeat 3

Each stream is a GET /events (an event every 100 ms) read as a chunked body:
  clean            the terminating chunk came: the client saw a whole response
  truncated        the connection closed without it, before the drain deadline
  cut_at_deadline  the connection closed without it at the drain deadline (the server cut
                   it: graceful logs it in drain.deadline)
  killed           still open when the harness killed the server (drain deadline + 8 s)
The GETs (/work?ms=100) are classified as in the drain scenarios (bench/client.py).
drain_s: signal to exit; overhead_ms: exit minus the last stream or request end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

from bench.client import Request, classify
from bench.drain import SIGNALS, _read_seen
from bench.load import LoadConfig, LoadState, finish_clients, start_clients
from bench.progress import Progress
from bench.servers import PY, SERVERS, Launch, Server, start

DRAIN_S = 3.0  # every server's drain timeout (peers: their option for it)
KILL_AFTER_S = DRAIN_S + 8.0
GET_CLIENTS = 20
GET = Request("/work?ms=100")
OUTCOMES = ("clean", "truncated", "cut_at_deadline", "killed")


def _graceful_stopping(ln: Launch) -> list[str]:
    return [PY, "-m", "graceful", "serve", "bench.apps:aiohttp_app_stopping", "--host",
            "127.0.0.1", "--port", "0", "--log-format", "json", "--drain-timeout",
            f"{ln.drain_timeout_s:g}", "--loop", "asyncio"]


STREAM_SERVERS: dict[str, Server] = {
    "graceful": SERVERS["graceful"],
    "graceful-stopping": Server("graceful-stopping", _graceful_stopping, port_from_log=True),
    **{name: SERVERS[name] for name in ("aiohttp", "uvicorn", "hypercorn", "granian",
                                        "gunicorn-aiohttp")},
}


@dataclasses.dataclass
class Stream:
    start: float = 0.0
    opened: float = 0.0  # headers received
    end: float = 0.0
    events: int = 0
    clean: bool = False
    bye: bool = False  # the last event was the server's goodbye
    error: str = ""


async def hold_stream(port: int, s: Stream, opened: asyncio.Event, count: list[int],
                      total: int) -> None:
    s.start = time.monotonic()
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            s.error = "status"
            return
        s.opened = time.monotonic()
        count[0] += 1
        if count[0] == total:
            opened.set()
        last = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                s.clean = True
                s.bye = last.startswith(b"event: bye")
                return
            last = (await reader.readexactly(size + 2))[:-2]
            s.events += last.count(b"\n\n")
    except (asyncio.IncompleteReadError, ConnectionError, ValueError) as err:
        s.error = type(err).__name__
    except asyncio.CancelledError:
        s.error = "cancelled"
        raise
    finally:
        s.end = time.monotonic()
        if writer is not None:
            writer.close()


def outcome(s: Stream, t_signal: float, t_kill: float | None) -> str:
    if s.clean:
        return "clean"
    if t_kill is not None and s.end >= t_kill - 0.05:
        return "killed"
    if s.end - t_signal >= DRAIN_S - 0.1:
        return "cut_at_deadline"
    return "truncated"


async def run_one(server: Server, streams: int, repeat: int, out: Path,
                  progress: Progress | None = None) -> dict[str, Any]:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    slug = f"{server.name}-stream-s{streams}-{repeat + 1}"
    seen_log = logs / f"{slug}.seen"
    seen_log.unlink(missing_ok=True)
    proc = await start(server, Launch(port=0, drain_timeout_s=DRAIN_S), logs / f"{slug}.log",
                       seen_log)
    opened, count = asyncio.Event(), [0]
    held = [Stream() for _ in range(streams)]
    tasks = [asyncio.ensure_future(hold_stream(proc.port, s, opened, count, streams))
             for s in held]
    state = LoadState()
    gets = start_clients(LoadConfig(port=proc.port, connections=GET_CLIENTS, request=GET,
                                    stagger_s=0.1, attempt_timeout_s=KILL_AFTER_S + 5), state)
    t_kill = None
    try:
        with contextlib.suppress(TimeoutError):  # counted below: opened < streams
            await asyncio.wait_for(opened.wait(), 30)
        await asyncio.sleep(1.0)  # every stream has had events; GETs of every age in flight
        t_signal = time.monotonic()
        proc.signal(SIGNALS["TERM"])
        try:
            await asyncio.wait_for(proc.process.wait(), KILL_AFTER_S)
        except TimeoutError:
            t_kill = time.monotonic()
            await proc.kill_group()
        t_exit = time.monotonic()
        state.stopped = True
        await proc.kill_group()
        await asyncio.wait(tasks, timeout=5)
        await finish_clients(gets, grace_s=5.0)
    finally:
        state.stopped = True
        await proc.kill_group()
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=5)
        await finish_clients(gets, grace_s=1.0)
    seen = _read_seen(seen_log)
    counts = dict.fromkeys(OUTCOMES, 0)
    for s in held:
        if s.opened:
            counts[outcome(s, t_signal, t_kill)] += 1
    get_counts: dict[str, int] = {}
    ends = [s.end for s in held if s.opened]
    for a in state.attempts:
        a.outcome = classify(a, seen).value
        get_counts[a.outcome] = get_counts.get(a.outcome, 0) + 1
        if a.start < t_signal and a.end:
            ends.append(a.end)
    last_end = max((e for e in ends if e <= t_exit + 1), default=t_signal)
    result = {
        "server": server.name, "streams": streams, "repeat": repeat + 1,
        "opened": sum(1 for s in held if s.opened), "stream_counts": counts,
        "bye": sum(s.bye for s in held), "get_counts": get_counts,
        "exit_code": proc.process.returncode, "killed": t_kill is not None,
        "drain_s": round(t_exit - t_signal, 4),
        "last_end_s": round(last_end - t_signal, 4),
        "overhead_ms": round((t_exit - max(last_end, t_signal)) * 1000, 1),
    }
    if progress is not None:
        progress.finish(f"{server.name} stream s={streams} #{repeat + 1}", one_line(result))
    return result


def one_line(r: dict[str, Any]) -> str:
    c, g = r["stream_counts"], r["get_counts"]
    return (f"clean={c['clean']} truncated={c['truncated']} cut={c['cut_at_deadline']} "
            f"killed={c['killed']} gets_ok={g.get('ok', 0)} lost={g.get('lost', 0)} "
            f"race={g.get('keepalive_race', 0)} drain={r['drain_s']:.3f}s "
            f"overhead={r['overhead_ms']:.0f}ms exit={r['exit_code']}")


async def run(servers: list[str], sizes: list[int], repeats: int, out: Path
              ) -> list[dict[str, Any]]:
    progress = Progress(len(servers) * len(sizes) * repeats)
    results = []
    for size in sizes:
        for repeat in range(repeats):
            for name in servers:
                results.append(await run_one(STREAM_SERVERS[name], size, repeat, out,
                                             progress))
    return results


def table(results: list[dict[str, Any]], against: str = "aiohttp") -> str:
    """One row per server and stream count: outcomes summed over the runs, medians, and the
    drain time as a ratio to `against`'s in the same repeat (the machine is shared)."""
    rows = ["| server | streams | runs | clean | truncated | cut at deadline | killed | "
            "GETs lost / races | median drain | median overhead | drain / "
            f"{against} (median) | exit codes |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["streams"], r["server"]) for r in results},
                  key=lambda k: (k[0], list(STREAM_SERVERS).index(k[1])))
    for streams, name in keys:
        runs = [r for r in results if r["server"] == name and r["streams"] == streams]
        total = {k: sum(r["stream_counts"][k] for r in runs) for k in OUTCOMES}
        lost = sum(r["get_counts"].get("lost", 0) for r in runs)
        races = sum(r["get_counts"].get("keepalive_race", 0) for r in runs)
        ratios = []
        for r in runs:
            peer = [p for p in results if p["server"] == against and p["streams"] == streams
                    and p["repeat"] == r["repeat"]]
            if peer and peer[0]["drain_s"] > 0:
                ratios.append(r["drain_s"] / peer[0]["drain_s"])
        ratio = f"{statistics.median(ratios):.2f}" if ratios else "n/a"
        codes = ",".join(sorted({str(r["exit_code"]) for r in runs}))
        rows.append(
            f"| {name} | {streams} | {len(runs)} | {total['clean']} | {total['truncated']} | "
            f"{total['cut_at_deadline']} | {total['killed']} | {lost} / {races} | "
            f"{statistics.median(r['drain_s'] for r in runs):.3f} s | "
            f"{statistics.median(r['overhead_ms'] for r in runs):.0f} ms | {ratio} | "
            f"{codes} |")
    return "\n".join(rows)
