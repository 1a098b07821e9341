"""Throughput mode: no stop. Requests per second of graceful against bare aiohttp
(``web.run_app``) serving the same app on the same loop, in interleaved runs.

The client is a lean asyncio Protocol (one request in flight per connection, the next
written the moment a response is complete) so that it costs less than the servers. The
server's CPU time per request (from /proc) is reported too: it does not depend on
whether the client or the server is the bottleneck on a small machine. Last, per loop,
bench/protocol_cost.py measures what graceful's handler adds per request in one process,
which is steadier than either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any, cast

from bench.figures import percentile
from bench.progress import Progress
from bench.servers import ROOT, SERVERS, THROUGHPUT_PAIR, Launch, client_tls, descendants, start

# What each variant compares (a against b), and how graceful is launched for each side.
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"pair": THROUGHPUT_PAIR, "tls": False, "a_args": (), "b_args": ()},
    # HTTPS: graceful's TLS against run_app's ssl_context, same certificate
    "tls": {"pair": THROUGHPUT_PAIR, "tls": True, "a_args": (), "b_args": ()},
    # graceful with --access-log (JSON lines to its log file) against graceful without
    "access-log": {"pair": ("graceful", "graceful"), "tls": False,
                   "a_args": ("--access-log",), "b_args": ()},
    # graceful serving Prometheus metrics on their own listener against graceful without
    "metrics": {"pair": ("graceful", "graceful"), "tls": False,
                "a_args": ("--metrics-bind", "127.0.0.1:0"), "b_args": ()},
}

REQUEST = b"GET /work?ms=0 HTTP/1.1\r\nHost: bench\r\n\r\n"


class _Pump(asyncio.Protocol):
    def __init__(self, counter: list[int], latencies: list[float] | None = None) -> None:
        self.counter, self.buf, self.running = counter, b"", True
        self.transport: asyncio.Transport | None = None
        # Seconds from writing each request to its whole response, while not None.
        self.latencies = latencies
        self.sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self.sent = time.perf_counter()
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length:]
            self.counter[0] += 1
            now = time.perf_counter()
            if self.latencies is not None:
                self.latencies.append(now - self.sent)
            if self.running and self.transport is not None:
                self.sent = now
                self.transport.write(REQUEST)


async def protocol_cost(loop: str, rounds: int) -> dict[str, float]:
    """bench/protocol_cost.py in a process of its own (its own loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.protocol_cost", "--loop", loop, "--rounds", str(rounds),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"bench.protocol_cost exited {process.returncode}")
    return cast(dict[str, float], json.loads(out))


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its reaped children (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def _certificate(out: Path) -> tuple[str, str]:
    """A certificate made now (trustme, from the dev extra) for the tls variant."""
    import trustme

    folder = out / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    cert = trustme.CA().issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(folder / "cert.pem")
    cert.private_key_pem.write_to_path(folder / "key.pem")
    return str(folder / "cert.pem"), str(folder / "key.pem")


async def measure(server: str, loop: str, connections: int, seconds: float,
                  out: Path, tls: tuple[str, str] | None = None,
                  graceful_args: tuple[str, ...] = ()) -> dict[str, float]:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    launch = Launch(port=0, drain_timeout_s=5, loop=loop, tls=tls, graceful_args=graceful_args)
    proc = await start(SERVERS[server], launch,
                       logs / f"throughput-{server}-{loop}.log", None)
    counter = [0]
    latencies: list[float] = []
    ev = asyncio.get_running_loop()
    pumps: list[_Pump] = []
    try:
        for _ in range(connections):
            _, pump = await ev.create_connection(lambda: _Pump(counter), "127.0.0.1",
                                                 proc.port, ssl=client_tls() if tls else None)
            pumps.append(pump)
        await asyncio.sleep(0.5)  # warm-up
        for pump in pumps:
            pump.latencies = latencies
        n0, c0, t0 = counter[0], _cpu_s(proc.pid), time.monotonic()
        await asyncio.sleep(seconds)
        n1, c1, t1 = counter[0], _cpu_s(proc.pid), time.monotonic()
        for pump in pumps:
            pump.latencies = None
    finally:
        for pump in pumps:
            pump.running = False
            if pump.transport is not None:
                pump.transport.close()
        proc.signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.process.wait(), 15)
        await proc.kill_group()
    requests = n1 - n0
    ms = [v * 1000 for v in latencies]
    return {"rps": requests / (t1 - t0), "cpu_us": (c1 - c0) * 1e6 / max(requests, 1),
            "p50_ms": percentile(ms, 0.50) or 0.0, "p99_ms": percentile(ms, 0.99) or 0.0,
            "max_ms": max(ms, default=0.0)}


async def run(loops: list[str], rounds: int, connections: int, seconds: float,
              out: Path, variant: str = "plain"
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Interleaved rounds, alternating which server goes first; ratios are per round.
    In every variant the row's `graceful_*` side is a and `aiohttp_*` side is b."""
    spec = VARIANTS[variant]
    a, b = spec["pair"]
    tls = _certificate(out) if spec["tls"] else None
    sides = {"a": (a, spec["a_args"]), "b": (b, spec["b_args"])}
    progress = Progress(len(loops) * rounds * 2)
    raw: list[dict[str, Any]] = []
    rows = []
    for loop in loops:
        ratios, cpu_ratios = [], []
        per: dict[str, list[dict[str, float]]] = {"a": [], "b": []}
        for i in range(rounds):
            for side in (("a", "b") if i % 2 == 0 else ("b", "a")):
                server, args = sides[side]
                label = f"throughput {variant} {server}{' ' + ' '.join(args) if args else ''}"
                progress.status(f"{label} {loop} round {i + 1}", "")
                m = await measure(server, loop, connections, seconds, out, tls, args)
                per[side].append(m)
                raw.append({"server": server, "args": list(args), "variant": variant,
                            "loop": loop, "round": i + 1, **m})
                progress.finish(f"{label} {loop} round {i + 1}",
                                f"{m['rps']:.0f} rps, {m['cpu_us']:.1f} µs CPU/req, "
                                f"p50/p99/max {m['p50_ms']:.1f}/{m['p99_ms']:.1f}/"
                                f"{m['max_ms']:.1f} ms")
            ratios.append(per["a"][-1]["rps"] / per["b"][-1]["rps"])
            cpu_ratios.append(per["a"][-1]["cpu_us"] / per["b"][-1]["cpu_us"])
        a, b = "a", "b"
        cost = await protocol_cost(loop, rounds) if variant == "plain" else None
        rows.append({
            "loop": loop, "rounds": rounds, "connections": connections, "seconds": seconds,
            "graceful_rps": statistics.median(m["rps"] for m in per[a]),
            "aiohttp_rps": statistics.median(m["rps"] for m in per[b]),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "graceful_cpu_us": statistics.median(m["cpu_us"] for m in per[a]),
            "aiohttp_cpu_us": statistics.median(m["cpu_us"] for m in per[b]),
            "cpu_ratio": statistics.median(cpu_ratios),
            "cpu_ratio_min": min(cpu_ratios), "cpu_ratio_max": max(cpu_ratios),
            **{f"{name}_{figure}": statistics.median(m[figure] for m in per[side])
               for side, name in (("a", "graceful"), ("b", "aiohttp"))
               for figure in ("p50_ms", "p99_ms", "max_ms")},
            "protocol": cost, "variant": variant,
            "a": " ".join([sides["a"][0], *sides["a"][1]]),
            "b": " ".join([sides["b"][0], *sides["b"][1]]),
        })
    return rows, raw


# --variant workers: graceful with --workers 1 and 2 against the same peers with 1 and 2
# workers, all measured by wrk (C, one thread: less CPU per request than the Python client
# above, so more of a small machine's cores go to the servers), in interleaved rounds.
WRK_LINE = "Requests/sec:"


def _tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and every live process below it (a server and
    its workers, whatever their process group), with what each has counted for its reaped
    children."""
    total = 0
    for each in descendants(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / os.sysconf("SC_CLK_TCK")


def parse_wrk(text: str) -> dict[str, float]:
    """Requests, requests/s, latency percentiles (ms) and errors from `wrk --latency`."""
    figures: dict[str, float] = {"errors": 0.0}
    units = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    for line in text.splitlines():
        words = line.split()
        if line.startswith(WRK_LINE):
            figures["rps"] = float(words[1])
        elif len(words) >= 4 and words[1:3] == ["requests", "in"]:
            figures["requests"] = float(words[0])
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            value = words[1]
            unit = next(u for u in ("us", "ms", "s") if value.endswith(u))
            figures[f"p{words[0][:-1]}_ms"] = float(value[:-len(unit)]) * units[unit]
        elif line.strip().startswith(("Socket errors:", "Non-2xx")):
            figures["errors"] += sum(int(w.strip(",")) for w in words if w.strip(",").isdigit())
    return figures


async def _wrk(port: int, connections: int, seconds: float) -> dict[str, float]:
    process = await asyncio.create_subprocess_exec(
        "wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--latency",
        f"http://127.0.0.1:{port}/work?ms=0", stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited {process.returncode}: {out.decode()[-300:]}")
    return parse_wrk(out.decode())


async def measure_wrk(server: str, connections: int, seconds: float, out: Path
                      ) -> dict[str, float]:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    # uvloop for the entries that take the loop from here (aiohttp's run_app); graceful's
    # entries name theirs, the peers pick uvloop themselves where installed (not hypercorn,
    # gunicorn's aiohttp worker)
    proc = await start(SERVERS[server], Launch(port=0, drain_timeout_s=5, loop="uvloop"),
                       logs / f"throughput-{server}.log", None)
    try:
        await _wrk(proc.port, connections, 1)  # warm-up: every worker has served
        c0 = _tree_cpu_s(proc.pid)
        m = await _wrk(proc.port, connections, seconds)
        c1 = _tree_cpu_s(proc.pid)
    finally:
        proc.signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.process.wait(), 15)
        await proc.kill_group()
    return {**m, "cpu_us": (c1 - c0) * 1e6 / max(m.get("requests", 0), 1)}


def _families(servers: list[str]) -> dict[str, dict[int, str]]:
    """{family: {workers: server}}: a peer's 1- and 2-worker entries side by side."""
    out: dict[str, dict[int, str]] = {}
    for name in servers:
        s = SERVERS[name]
        family = name.removesuffix("-workers2").removesuffix("-w2")
        out.setdefault(family, {})[s.workers] = name
    return out


async def run_workers(servers: list[str], rounds: int, connections: int, seconds: float,
                      out: Path, base: str = "graceful-uvloop"
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each server once per round, the order reversed every other round; per round, each
    server's rps over `base`'s with the same worker count, and each family's 2 workers over
    1 worker."""
    progress = Progress(rounds * len(servers))
    per: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    raw: list[dict[str, Any]] = []
    for i in range(rounds):
        for name in (servers if i % 2 == 0 else servers[::-1]):
            progress.status(f"throughput workers {name} round {i + 1}", "")
            m = await measure_wrk(name, connections, seconds, out)
            per[name].append(m)
            raw.append({"server": name, "workers": SERVERS[name].workers, "round": i + 1,
                        "variant": "workers", "client": "wrk", **m})
            progress.finish(f"throughput workers {name} round {i + 1}",
                            f"{m.get('rps', 0):.0f} rps, {m['cpu_us']:.1f} µs CPU/req, "
                            f"p50/p99 {m.get('p50_ms', 0):.2f}/{m.get('p99_ms', 0):.2f} ms, "
                            f"errors {m['errors']:.0f}")
    return workers_rows(raw, base), raw


def workers_rows(raw: list[dict[str, Any]], base: str = "graceful-uvloop"
                 ) -> list[dict[str, Any]]:
    """The rows of `--variant workers` from its raw runs: per server and round, its
    requests/s over `base`'s with the same worker count (as "base / this"), its CPU per
    request over `base`'s, and its 2 workers' requests/s over its 1 worker's; medians and
    ranges over the rounds. Absolute figures stay in the raw runs."""
    servers = list(dict.fromkeys(r["server"] for r in raw))
    per = {(r["server"], r["round"]): r for r in raw}
    rounds = sorted({r["round"] for r in raw})
    families = _families(servers)
    bases = families.get(base, {})
    rows = []

    def ratios(a: str | None, b: str | None, key: str) -> list[float]:
        return [per[(a, i)][key] / per[(b, i)][key] for i in rounds
                if (a, i) in per and (b, i) in per and per[(b, i)].get(key)]

    for family, by_workers in families.items():
        for workers, name in sorted(by_workers.items()):
            row: dict[str, Any] = {"variant": "workers", "server": name, "family": family,
                                   "workers": workers, "rounds": len(rounds),
                                   "base": bases.get(workers),
                                   "errors": sum(per[(name, i)]["errors"] for i in rounds
                                                 if (name, i) in per)}
            for key, values in (
                    ("base_over", ratios(bases.get(workers), name, "rps")),
                    ("cpu_over_base", ratios(name, bases.get(workers), "cpu_us")),
                    ("scale", ratios(name, by_workers.get(1), "rps") if workers != 1 else [])):
                row[key] = statistics.median(values) if values else None
                row[f"{key}_min"] = min(values, default=None)
                row[f"{key}_max"] = max(values, default=None)
            rows.append(row)
    return rows
