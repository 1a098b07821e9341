"""python -m bench drain ... | python -m bench throughput ...  (see bench/README section)"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import platform
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import report
from bench.drain import RESTART_SIGNAL, SIGNALS, RunSpec, run_one
from bench.progress import Progress
from bench.scenarios import NAMES, build
from bench.servers import DRAIN_SERVERS, RESTART_SERVERS, SERVERS, WORKER_SERVERS

OUT = Path(__file__).resolve().parent / "out"
PACKAGES = ("aiohttp-graceful", "aiohttp", "uvicorn", "hypercorn", "granian", "gunicorn", "uvloop",
            "httptools", "structlog", "rich")  # rich: structlog imports it where installed


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="mode", required=True)
    drain = sub.add_parser("drain", help="request loss and drain cost under a stop signal")
    drain.add_argument("--servers", type=_csv, default=None,
                       help=f"comma list of: {', '.join(SERVERS)} (default: "
                            f"{', '.join(RESTART_SERVERS)} for the restart scenarios, the "
                            "others for the rest)")
    drain.add_argument("--scenario", type=_csv, default=["short"],
                       help=f"comma list of: {', '.join(NAMES)}")
    drain.add_argument("--connections", type=lambda v: [int(x) for x in _csv(v)],
                       default=[50])
    drain.add_argument("--latency-ms", type=float, default=300.0,
                       help="handler time of the short and prestop scenarios")
    drain.add_argument("--signal", type=_csv, default=["TERM"],
                       help="TERM, INT or both (the restart scenarios: always HUP)")
    drain.add_argument("--repeat", type=int, default=1)
    drain.add_argument("--peer-defaults", action="store_true",
                       help="run peers without their drain-timeout option (their defaults); "
                            "graceful always gets the scenario's --drain-timeout")
    drain.add_argument("--checkpoint", action="store_true",
                       help="restart scenarios: graceful keeps a counter of the 200s in a "
                            "checkpoint, checked against the clients' count")
    drain.add_argument("--window", type=float, default=4.0,
                       help="restart scenarios: seconds after the signal whose requests "
                            "make the window's figures")
    drain.add_argument("--control", action="store_true",
                       help="restart scenarios: before each restart run, the same server "
                            "under the same load for the same window with no signal (what "
                            "the window's latency is without a restart)")
    stream = sub.add_parser("stream", help="SSE streams and keep-alive GETs under SIGTERM")
    stream.add_argument("--servers", type=_csv, default=None,
                        help="comma list (default: graceful, graceful-stopping and the peers)")
    stream.add_argument("--streams", type=lambda v: [int(x) for x in _csv(v)],
                        default=[50, 500])
    stream.add_argument("--repeat", type=int, default=1)
    stream.add_argument("--out", type=Path, default=OUT / "stream")
    thr = sub.add_parser("throughput", help="requests/s of graceful against bare aiohttp")
    thr.add_argument("--loop", type=_csv, default=["asyncio", "uvloop"])
    thr.add_argument("--rounds", type=int, default=5)
    thr.add_argument("--connections", type=int, default=32)
    thr.add_argument("--seconds", type=float, default=3.0)
    thr.add_argument("--variant", choices=("plain", "tls", "access-log", "metrics", "workers"),
                     default="plain",
                     help="plain: graceful vs run_app; tls: both over HTTPS; access-log: "
                          "graceful --access-log vs graceful; metrics: graceful "
                          "--metrics-bind vs graceful; workers: graceful --workers 1 and 2 "
                          "against the peers with 1 and 2 workers, measured by wrk")
    thr.add_argument("--servers", type=_csv, default=list(WORKER_SERVERS),
                     help="--variant workers: comma list (default: "
                          f"{', '.join(WORKER_SERVERS)})")
    st = sub.add_parser("startup", help="exec to READY of each server, same app")
    st.add_argument("--servers", type=_csv, default=["graceful", "graceful-uvloop", "aiohttp",
                                                     "uvicorn", "hypercorn", "granian"])
    st.add_argument("--starts", type=int, default=11, help="timed starts per server")
    st.add_argument("--realtime", action="store_true",
                    help="run the harness and the servers it starts under SCHED_FIFO (root): "
                         "the other work of a shared machine then delays none of them")
    crash = sub.add_parser("crash", help="kill -9 under load, restart, time to READY, "
                                         "state lost")
    crash.add_argument("--interval", type=_csv, default=["0.1", "1", "off"],
                       help="--checkpoint-interval values (seconds, or off)")
    crash.add_argument("--restart-delay", type=lambda v: [float(x) for x in _csv(v)],
                       default=[0.0, 1.0], help="seconds between the kill and the restart")
    crash.add_argument("--repeat", type=int, default=3, help="kills per combination "
                       "(the soak mode: --repeat 100)")
    crash.add_argument("--connections", type=int, default=20)
    wr = sub.add_parser("wine-reload", help="Windows (under Wine): reloads of a service "
                        "(or a console serve) with 2 workers under load")
    wr.add_argument("--target", choices=("service", "console"), default="service")
    wr.add_argument("--loop", type=_csv, default=["asyncio", "winloop"],
                    help="comma list of the workers' --loop values, one run each")
    wr.add_argument("--reloads", type=int, default=10)
    wr.add_argument("--connections", type=int, default=50,
                    help="clients: half keep-alive, half a new connection per request")
    wr.add_argument("--latency-ms", type=float, default=300.0, help="handler time")
    wr.add_argument("--control", type=float, default=5.0,
                    help="seconds of the control window before each reload")
    for p in (drain, thr, st, crash, wr):
        p.add_argument("--out", type=Path, default=OUT, help="folder for JSON, logs, PNGs")
    rep = sub.add_parser("report", help="write bench/RESULTS.md from earlier JSON results")
    rep.add_argument("--drain", type=Path, action="append",
                     help="a drain.json (repeatable; required unless --update)")
    rep.add_argument("--throughput", type=Path, help="a throughput.json")
    rep.add_argument("--notes", type=Path, help="markdown inserted after the commands (with "
                     "--update: after the explanation of the --restart or --throughput "
                     "--variant workers section)")
    rep.add_argument("--stream", type=Path, help="a stream.json")
    rep.add_argument("--startup", type=Path, help="a startup.json")
    rep.add_argument("--crash", type=Path, help="a crash.json")
    rep.add_argument("--restart", type=Path, action="append",
                     help="a drain.json of restart runs (repeatable; with --update)")
    rep.add_argument("--write", type=Path, default=OUT.parent / "RESULTS.md")
    rep.add_argument("--update", action="store_true",
                     help="rewrite only the sections of the files given (--startup, --crash, "
                          "--throughput, --restart) "
                          "in the existing --write file")
    args = parser.parse_args(argv)
    if args.mode == "report" and not args.update and not args.drain:
        parser.error("report needs --drain (or --update with --startup/--crash/--throughput/"
                     "--restart)")
    if args.mode == "stream":
        from bench.stream import STREAM_SERVERS

        args.servers = args.servers or list(STREAM_SERVERS)
        for name in args.servers:
            if name not in STREAM_SERVERS:
                parser.error(f"unknown server {name!r} ({', '.join(STREAM_SERVERS)})")
    if args.mode == "drain":
        for name in args.servers or ():
            if name not in SERVERS:
                parser.error(f"unknown server {name!r}")
        for name in args.signal:
            if name not in SIGNALS:
                parser.error(f"unknown signal {name!r} (TERM, INT)")
        for name in args.scenario:
            if name not in NAMES:
                parser.error(f"unknown scenario {name!r}")
        if args.checkpoint:
            restarting = args.servers or RESTART_SERVERS
            if refused := [n for n in restarting if SERVERS[n].port_from_log
                           and SERVERS[n].workers > 1]:
                parser.error(f"--checkpoint: graceful refuses --checkpoint with more than one "
                             f"worker ({', '.join(refused)}); give --servers with one-worker "
                             "graceful entries (graceful-uvloop)")
    if args.mode == "throughput" and args.variant == "workers":
        import shutil

        for name in args.servers:
            if name not in SERVERS:
                parser.error(f"unknown server {name!r}")
        if shutil.which("wrk") is None:
            parser.error("--variant workers needs wrk (Debian: apt-get install wrk)")
    return args


def environment(argv: list[str]) -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "command": "python -m bench " + shlex.join(argv),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(), "platform": platform.platform(),
        "cpus": __import__("os").cpu_count(), "versions": versions,
    }


def drain_specs(args: argparse.Namespace) -> list[RunSpec]:
    """Every run, the servers of a repeat one after the other (A B C A B C: a load change on
    the shared machine falls on all of them alike)."""
    specs = []
    for scenario in (build(name, args.latency_ms) for name in args.scenario):
        default = RESTART_SERVERS if scenario.restart else DRAIN_SERVERS
        signals = [RESTART_SIGNAL] if scenario.restart else args.signal
        controls = (True, False) if scenario.restart and args.control else (False,)
        specs += [RunSpec(SERVERS[server], scenario, conns, sig, rep, args.peer_defaults,
                          args.checkpoint, control, args.window)
                  for conns in args.connections for sig in signals
                  for rep in range(args.repeat) for server in args.servers or default
                  for control in controls]
    return specs


async def drain_main(args: argparse.Namespace, env: dict[str, Any]) -> int:
    specs = drain_specs(args)
    progress = Progress(len(specs))
    results = []
    for spec in specs:
        results.append(await run_one(spec, args.out, progress))
    (args.out / "drain.json").write_text(json.dumps({"env": env, "runs": results}))
    _draw([r for r in results if not r.get("control")], args.out)
    print(f"raw results: {args.out / 'drain.json'}", file=sys.stderr)
    restarts = [r for r in results if r["signal"] == f"SIG{RESTART_SIGNAL}"]
    if restarts:
        print(report.restart_table(restarts))
        print()
        servers = {r["server"] for r in restarts}
        if len(servers) > 1 and "graceful-uvloop-workers2" in servers:
            print(report.restart_ratio_table(restarts, "graceful-uvloop-workers2"))
            print()
        if any(r.get("control") for r in restarts):
            print(report.restart_cost_table(restarts))
            print()
    if stops := [r for r in results if r not in restarts]:
        print(report.drain_table(stops))
        print()
        print(report.loss_summary(stops))
        print()
        print(report.latency_table(stops))
    return 0


def _draw(results: list[dict[str, Any]], out: Path) -> None:
    """The drain plots, where matplotlib (the bench extra) is installed; the tables do
    without it."""
    try:
        from bench import plots
    except ImportError as err:
        print(f"no plots ({err}): pip install -e '.[bench]'", file=sys.stderr)
        return
    for path in [plots.summary_grid(results, out), *plots.timelines(results, out),
                 plots.loss_bars(results, out)]:
        print(f"plot: {path}", file=sys.stderr)


async def startup_main(args: argparse.Namespace, env: dict[str, Any]) -> int:
    from bench import startup

    if args.realtime:  # inherited by every server the harness starts
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        env["scheduling"] = "SCHED_FIFO 10"
    results = await startup.run(args.servers, args.starts, args.out)
    (args.out / "startup.json").write_text(json.dumps(
        {"env": env, "rows": [r.summary() | {"seconds": r.seconds} for r in results]}))
    print(f"raw results: {args.out / 'startup.json'}", file=sys.stderr)
    print(startup.table(results))
    return 0


async def crash_main(args: argparse.Namespace, env: dict[str, Any]) -> int:
    from bench import crash

    runs = await crash.run(args.interval, args.restart_delay, args.repeat, args.connections,
                           args.out)
    (args.out / "crash.json").write_text(json.dumps({"env": env, "runs": runs}))
    print(f"raw results: {args.out / 'crash.json'}", file=sys.stderr)
    print(crash.table(runs))
    return 0


async def stream_main(args: argparse.Namespace, env: dict[str, Any]) -> int:
    from bench import stream

    results = await stream.run(args.servers, args.streams, args.repeat, args.out)
    (args.out / "stream.json").write_text(json.dumps({"env": env, "runs": results}))
    print(f"raw results: {args.out / 'stream.json'}", file=sys.stderr)
    print(stream.table(results))
    return 0


async def throughput_main(args: argparse.Namespace, env: dict[str, Any]) -> int:
    from bench import throughput

    if args.variant == "workers":
        rows, raw = await throughput.run_workers(args.servers, args.rounds, args.connections,
                                                 args.seconds, args.out)
        (args.out / "throughput.json").write_text(json.dumps({"env": env, "rows": rows,
                                                              "runs": raw}))
        print(f"raw results: {args.out / 'throughput.json'}", file=sys.stderr)
        print(report.workers_throughput_table(rows))
        return 0
    rows, raw = await throughput.run(args.loop, args.rounds, args.connections, args.seconds,
                                     args.out, args.variant)
    (args.out / "throughput.json").write_text(json.dumps({"env": env, "rows": rows,
                                                          "runs": raw}))
    print(f"raw results: {args.out / 'throughput.json'}", file=sys.stderr)
    if args.variant != "plain":
        print(f"variant {args.variant}: the graceful column is `{rows[0]['a']}`, the aiohttp "
              f"column `{rows[0]['b']}`")
    print(report.throughput_table(rows))
    return 0


async def wine_reload_main(args: argparse.Namespace, env: dict[str, Any]) -> int:
    from bench import wine_reload

    results = [await wine_reload.run(loop, args.target, args.reloads, args.connections,
                                     args.latency_ms, args.control, args.out)
               for loop in args.loop]
    path = args.out / f"wine-reload-{args.target}.json"
    path.write_text(json.dumps({"env": env, "runs": results}))
    print(f"raw results: {path}", file=sys.stderr)
    print(wine_reload.summary(results))
    print()
    print(wine_reload.table(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.mode == "report":
        from bench import results

        if args.update:
            results.update(args.write, args.startup, args.crash, args.throughput,
                           args.restart, args.notes.read_text() if args.notes else "")
            print(f"updated {args.write}", file=sys.stderr)
            return 0
        for path in results.write(args.drain, args.throughput, args.write, args.notes,
                                  args.stream, args.startup, args.crash):
            print(f"plot: {path}", file=sys.stderr)
        print(f"wrote {args.write}", file=sys.stderr)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    # A write to a connection the server already closed is an expected event here.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    env = environment(argv)
    run = {"drain": drain_main, "stream": stream_main, "startup": startup_main,
           "crash": crash_main, "wine-reload": wine_reload_main}.get(args.mode, throughput_main)
    try:
        import uvloop  # the harness's own loop: cheaper, so the servers get the CPU
    except ImportError:
        return asyncio.run(run(args, env))
    return uvloop.run(run(args, env))


if __name__ == "__main__":
    sys.exit(main())
