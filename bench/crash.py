"""Crash recovery: kill -9 under load, restart as a supervisor would, measure what came back.

    python -m bench crash [--interval 0.1,1,off] [--restart-delay 0,1] [--repeat 3]
    python -m bench crash --repeat 100          # the soak mode (outside CI)

One run: graceful serves bench.crash_app (a counter in the checkpointed state, one
increment per request) with `--checkpoint-interval` I (or none); --connections clients
send `GET /hit` back to back for LOAD_S; the server is killed with SIGKILL; after the
restart delay it is started again on the same port and checkpoint. Measured:
- requests in flight at the kill (sent, never answered): unavoidable, counted;
- the checkpoint file after the kill verifies (`graceful checkpoint verify` semantics);
- time from the restart's exec to the first 200;
- increments lost: the highest value a client was answered before the kill, minus the
  value restored (updates acknowledged but never written), and the restored file's age.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.servers import PY, ROOT, _new_group, answers, free_port

LOAD_S = 2.5  # long enough for two flushes at a 1 s interval
READY_TIMEOUT_S = 30.0
POLL_S = 0.002


def _argv(port: int, checkpoint: Path, interval: str) -> list[str]:
    argv = [PY, "-m", "graceful", "serve", "bench.crash_app:make", "--host", "127.0.0.1",
            "--port", str(port), "--log-format", "json", "--loop", "asyncio",
            "--checkpoint", str(checkpoint)]
    return argv if interval == "off" else [*argv, "--checkpoint-interval", interval]


async def _start(argv: list[str], port: int, log: Path) -> tuple[Any, float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with log.open("ab") as out:
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, cwd=ROOT,
            env=env, **_new_group())
    while time.perf_counter() - started < READY_TIMEOUT_S:
        if proc.returncode is not None:
            raise RuntimeError(f"graceful exited {proc.returncode} (see {log})")
        if await answers(port):
            return proc, time.perf_counter() - started
        await asyncio.sleep(POLL_S)
    raise RuntimeError(f"not ready after {READY_TIMEOUT_S:g} s (see {log})")


async def _client(port: int, stop: asyncio.Event, acked: list[int], failed: list[int]) -> None:
    """GET /hit back to back on one keep-alive connection; reconnect after an error."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return  # the server is gone
        try:
            while not stop.is_set():
                writer.write(b"GET /hit HTTP/1.1\r\nHost: bench\r\n\r\n")
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                acked.append(int(await reader.readexactly(length)))
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            failed.append(1)  # in flight at the kill
            return
        finally:
            writer.close()


async def _value(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /hits HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        return int((await reader.read()).split(b"\r\n\r\n", 1)[1])
    finally:
        writer.close()


def _restored(log: Path) -> dict[str, Any]:
    """The last `checkpoint.restored` event of the log (empty if none)."""
    found: dict[str, Any] = {}
    for line in log.read_text(errors="replace").splitlines():
        if '"checkpoint.restored"' in line:
            with contextlib.suppress(ValueError):
                found = json.loads(line)
    return found


def _verifies(path: Path) -> bool | None:
    from graceful import checkpoint as ckpt
    from graceful.errors import GracefulError

    if not path.exists():
        return None  # nothing written yet (interval off, first run)
    try:
        ckpt.read(path)
    except GracefulError:
        return False
    return True


async def run_once(interval: str, delay: float, connections: int, folder: Path
                   ) -> dict[str, Any]:
    port, state, log = free_port(), folder / "state.json", folder / "server.log"
    argv = _argv(port, state, interval)
    first, _ = await _start(argv, port, log)
    stop = asyncio.Event()
    acked: list[int] = []
    failed: list[int] = []
    clients = [asyncio.ensure_future(_client(port, stop, acked, failed))
               for _ in range(connections)]
    await asyncio.sleep(LOAD_S)
    os.killpg(first.pid, signal.SIGKILL)
    await first.wait()
    await asyncio.wait(clients, timeout=5)
    stop.set()
    verifies = _verifies(state)
    await asyncio.sleep(delay)
    second, ready_s = await _start(argv, port, log)
    try:
        restored = await _value(port)
        event = _restored(log)
    finally:
        second.send_signal(signal.SIGTERM)
        await second.wait()
    last = max(acked, default=0)
    return {"interval": interval, "restart_delay_s": delay, "served": len(acked),
            "in_flight_lost": len(failed), "verifies": verifies, "ready_s": ready_s,
            "last_acked": last, "restored": restored, "increments_lost": last - restored,
            # the same as time: how much of the load's work the restored state lacks
            "lost_ms": (last - restored) / (len(acked) / LOAD_S) * 1000 if acked else None,
            "restored_age_s": event.get("age_s"), "restored_generation": event.get("generation")}


async def run(intervals: list[str], delays: list[float], repeat: int, connections: int,
              out: Path) -> list[dict[str, Any]]:
    from bench.startup import compile_sources

    compile_sources()
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for n in range(repeat):
        for interval in intervals:
            for delay in delays:
                folder = Path(tempfile.mkdtemp(prefix="crash-", dir=out))
                result = await run_once(interval, delay, connections, folder)
                runs.append(result | {"repeat": n})
                shutil.rmtree(folder, ignore_errors=True)
    return runs


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def table(runs: list[dict[str, Any]]) -> str:
    lines = ["| interval | restart after | runs | restart to READY ms (median / p95 / max) | "
             "in flight at kill (median) | increments lost (median / max) | as load time ms "
             "(median / max) | restored file's age s (median) | file verifies |",
             "|---|---|---|---|---|---|---|---|---|"]
    keys = sorted({(r["interval"], r["restart_delay_s"]) for r in runs},
                  key=lambda k: (k[0] == "off", float(k[0]) if k[0] != "off" else 0, k[1]))
    for interval, delay in keys:
        rows = [r for r in runs if (r["interval"], r["restart_delay_s"]) == (interval, delay)]
        ready = [r["ready_s"] * 1000 for r in rows]
        lost = [r["increments_lost"] for r in rows]
        lost_ms = [r["lost_ms"] for r in rows if r["lost_ms"] is not None]
        ages = [r["restored_age_s"] for r in rows if r["restored_age_s"] is not None]
        verdicts = {r["verifies"] for r in rows}
        verifies = ("always" if verdicts == {True} else "no file (never written)"
                    if verdicts == {None} else "NOT ALWAYS: " + str(sorted(map(str, verdicts))))
        lines.append(
            f"| {interval if interval == 'off' else interval + ' s'} | {delay:g} s | "
            f"{len(rows)} | {statistics.median(ready):.0f} / {_pct(ready, 0.95):.0f} / "
            f"{max(ready):.0f} | {statistics.median(r['in_flight_lost'] for r in rows):g} | "
            f"{statistics.median(lost):g} / {max(lost)} | "
            f"{statistics.median(lost_ms):.0f} / {max(lost_ms):.0f} | "
            f"{statistics.median(ages) if ages else '-'} | {verifies} |")
    return "\n".join(lines)
