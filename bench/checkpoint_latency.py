"""Request latency while a large, unchanging state is checkpointed every interval.

    python -m bench.checkpoint_latency --sizes 1,20,100 --interval 1 --seconds 15
    python -m bench.checkpoint_latency --tree /path/to/older/checkout   # the same, before

Serves bench/checkpoint_app.py with `graceful serve` (from --tree, default this checkout)
and a state of each size, once without --checkpoint-interval and once with it; an
open-loop client sends GET /fast at a fixed rate for the given time; prints p50, p99 and
max latency in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent


async def _load(port: int, rate: float, seconds: float) -> list[float]:
    """Open loop: a request every 1/rate s whether or not the last one was answered, its
    latency counted from when it was due (a stalled loop delays every request due then)."""
    latencies: list[float] = []
    loop = asyncio.get_running_loop()

    async def one(session: aiohttp.ClientSession, due: float) -> None:
        async with session.get(f"http://127.0.0.1:{port}/fast") as response:
            await response.read()
        latencies.append((loop.time() - due) * 1e3)

    connector = aiohttp.TCPConnector(limit=1000)
    async with aiohttp.ClientSession(connector=connector) as session:
        start, tasks = loop.time(), []
        for index in range(int(rate * seconds)):
            due = start + index / rate
            await asyncio.sleep(max(due - loop.time(), 0))
            tasks.append(asyncio.ensure_future(one(session, due)))
        await asyncio.gather(*tasks)
    return latencies


def _serve(tree: Path, megabytes: float, interval: float | None, folder: str) -> tuple[
        subprocess.Popen[str], int]:
    args = [sys.executable, "-m", "graceful", "serve", "checkpoint_app:make", "--app-dir",
            str(HERE), "--port", "0", "--log-format", "json", "--startup-timeout", "600",
            "--log-level", "debug",
            "--checkpoint", os.path.join(folder, f"s-{megabytes}-{interval}.json")]
    if interval:
        args += ["--checkpoint-interval", str(interval)]
    proc = subprocess.Popen(args, cwd=tree, env={**os.environ, "STATE_MB": str(megabytes)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    port = 0
    for line in proc.stderr:
        event = json.loads(line)
        if event["event"] == "server.started":
            port = event["port"]
            if not interval:
                return proc, port
        if event["event"] == "checkpoint.flushed" and event.get("periodic"):
            return proc, port  # the first write, of a state new to the file, is behind us
    raise RuntimeError(f"the server did not start (exit {proc.wait()})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.checkpoint_latency")
    parser.add_argument("--sizes", default="1,20,100", help="state sizes in MB, comma list")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=200, help="requests per second")
    parser.add_argument("--tree", type=Path, default=HERE.parent,
                        help="the checkout whose graceful serves (default: this one)")
    options = parser.parse_args()
    print(f"tree {options.tree}, interval {options.interval}s, {options.seconds}s of load, "
          f"{options.rate:g} requests/s (open loop)")
    print("| state MB | interval | requests | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for megabytes in (float(s) for s in options.sizes.split(",")):
            for interval in (None, options.interval):
                proc, port = _serve(options.tree, megabytes, interval, folder)
                try:
                    latencies = asyncio.run(_load(port, options.rate, options.seconds))
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(120)
                cuts = statistics.quantiles(latencies, n=100)
                print(f"| {megabytes:g} | {interval or 'none'} | {len(latencies)} | "
                      f"{cuts[49]:.1f} | {cuts[98]:.1f} | {max(latencies):.1f} |", flush=True)


if __name__ == "__main__":
    main()
