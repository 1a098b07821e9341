"""Start time: from exec to the first 200 answered on the port, per server, same app.

    python -m bench startup [--servers graceful,aiohttp,...] [--starts 11] [--out DIR]

The servers are started in turn, the order reversed every other round (A B C C B A ...),
so that a drift of the machine's speed falls on all of them alike; each start is timed
from just before the exec to the first `GET /` answered 200, polling a connection every
POLL_S; on Linux the CPU time the server's process had used by then is read too (the
scheduler's count, in nanoseconds: steadier than the wall time on a shared machine, where
other work delays a start). The process is then killed (its stop is not part of this).
Reports the median, min and max per server, and graceful's median over bare aiohttp's
(`web.run_app`, same app, same loop).
"""

from __future__ import annotations

import asyncio
import compileall
import dataclasses
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.servers import ROOT, SERVERS, Launch, Proc, _new_group, answers, free_port

POLL_S = 0.002
READY_TIMEOUT_S = 30.0
DEFAULT_SERVERS = ("graceful", "graceful-uvloop", "aiohttp", "uvicorn", "hypercorn", "granian")


@dataclasses.dataclass
class StartTimes:
    server: str
    seconds: list[float]
    cpu_seconds: list[float] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ms = sorted(s * 1000 for s in self.seconds)
        cpu = [s * 1000 for s in self.cpu_seconds]
        return {"server": self.server, "starts": len(ms), "median_ms": statistics.median(ms),
                "min_ms": ms[0], "max_ms": ms[-1],
                "cpu_median_ms": statistics.median(cpu) if cpu else None}


def argv_for(name: str, port: int) -> list[str]:
    """The server's bench command, on a port chosen here (graceful's reads `--port 0`)."""
    argv = SERVERS[name].argv(Launch(port=port, drain_timeout_s=10.0))
    if "--port" in argv and argv[argv.index("--port") + 1] == "0":
        argv[argv.index("--port") + 1] = str(port)
    return argv


def _cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of `pid` so far (Linux), None elsewhere: the scheduler's
    nanoseconds of each of its threads (/proc/PID/task/*/schedstat; exact for a process
    that is idle, as a server is once it has answered), else /proc/PID/stat's clock ticks
    (10 ms each: too coarse for a 20 % question on a 200 ms start)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        ns = sum(int((task / "schedstat").read_text().split()[0]) for task in tasks)
        if ns > 0:
            return ns / 1e9
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def time_start(name: str, log: Path, extra: list[str] | None = None
                     ) -> tuple[float, float | None]:
    """Seconds from exec to the first 200, and the CPU seconds used by then; the server is
    killed afterwards."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with log.open("ab") as out:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *argv_for(name, port), *(extra or []), stdin=asyncio.subprocess.DEVNULL,
            stdout=out, stderr=out, cwd=ROOT, env=env, **_new_group())
    proc = Proc(SERVERS[name], process, port, log)
    try:
        deadline = started + READY_TIMEOUT_S
        while time.perf_counter() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"{name} exited {process.returncode} (see {log})")
            if await answers(port):
                return time.perf_counter() - started, _cpu_s(process.pid)
            await asyncio.sleep(POLL_S)
        raise RuntimeError(f"{name} not ready after {READY_TIMEOUT_S:g} s (see {log})")
    finally:
        await proc.kill_group()


def compile_sources() -> None:
    """What installing a wheel does: the peers' .pyc files are in site-packages, and an
    editable graceful (or PYTHONDONTWRITEBYTECODE=1) would compile its own at every start."""
    for folder in ("graceful", "bench"):
        compileall.compile_dir(ROOT / folder, quiet=1)


async def run(servers: list[str], starts: int, out: Path) -> list[StartTimes]:
    out.mkdir(parents=True, exist_ok=True)
    compile_sources()
    results = {name: StartTimes(name, []) for name in servers}
    for name in servers:  # one warm-up each: the page cache, .pyc files
        await time_start(name, out / f"{name}.log")
    for round_ in range(starts):  # A B C, C B A, ...: no server always starts right after another
        for name in (servers if round_ % 2 == 0 else servers[::-1]):
            wall, cpu = await time_start(name, out / f"{name}.log")
            results[name].seconds.append(wall)
            if cpu is not None:
                results[name].cpu_seconds.append(cpu)
    return list(results.values())


def table(results: list[StartTimes]) -> str:
    rows = [r.summary() for r in results]
    base = next((r for r in rows if r["server"] == "aiohttp"), None)
    lines = ["| server | starts | wall median ms | min | max | / aiohttp | CPU median ms "
             "| / aiohttp |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratio = f"{r['median_ms'] / base['median_ms']:.2f}" if base else "-"
        cpu = r["cpu_median_ms"]
        cpu_ratio = (f"{cpu / base['cpu_median_ms']:.2f}"
                     if base and cpu and base["cpu_median_ms"] else "-")
        lines.append(f"| {r['server']} | {r['starts']} | {r['median_ms']:.0f} | "
                     f"{r['min_ms']:.0f} | {r['max_ms']:.0f} | {ratio} | "
                     f"{f'{cpu:.0f}' if cpu is not None else '-'} | {cpu_ratio} |")
    return "\n".join(lines)

