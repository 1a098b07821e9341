"""Markdown tables of drain and throughput results."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

GroupKey = tuple[str, int, str]


def groups(results: Iterable[dict[str, Any]]) -> dict[GroupKey, dict[str, list[dict[str, Any]]]]:
    """{(scenario, connections, signal): {server: [runs]}} in first-seen order."""
    out: dict[GroupKey, dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        key = (r["scenario"], r["connections"], r["signal"])
        out.setdefault(key, defaultdict(list))[r["server"]].append(r)
    return out


Cells = dict[tuple[str, GroupKey], tuple[int, int]]


def summary_cells(results: Iterable[dict[str, Any]]) -> tuple[list[str], list[GroupKey], Cells]:
    """Servers (rows), groups (columns) and, per cell that ran, (lost, races) summed over
    its runs: the summary figure's content."""
    results = list(results)
    servers: list[str] = []
    for r in results:
        if r["server"] not in servers:
            servers.append(r["server"])
    grouped = groups(results)
    cells = {(server, key): (sum(r["lost"] for r in runs), sum(r["race"] for r in runs))
             for key, by_server in grouped.items() for server, runs in by_server.items()}
    return servers, list(grouped), cells


def _per_run(values: list[Any]) -> str:
    if len(values) <= 5:
        return ",".join(str(v) for v in values)
    return f"{sum(values)} ({min(values)}-{max(values)})"


def _median(values: list[float | None], fmt: str) -> str:
    present = [v for v in values if v is not None]
    return format(statistics.median(present), fmt) if present else "-"


def _overhead(runs: list[dict[str, Any]]) -> str:
    """Median drain overhead; for a server that logs its own exit (graceful), also the
    part before that log line (the rest is the interpreter's teardown)."""
    text = _median([r["overhead_ms"] for r in runs], ".0f")
    inside = [r.get("runtime_overhead_ms") for r in runs]
    if any(v is not None for v in inside):
        text += f" ({_median(inside, '.0f')} in runtime)"
    return text


def drain_table(results: list[dict[str, Any]]) -> str:
    head = ("| scenario | conns | signal | server | ok | lost | race | refused | 5xx | timeout "
            "| drain s | overhead ms | stops accepting ms | `Connection: close` | exit "
            "| p50/p99 ms |")
    lines = [head, "|" + "---|" * 16]
    for (scenario, conns, sig), servers in groups(results).items():
        for server, runs in servers.items():
            c = [r["counts"] for r in runs]
            exits = sorted({("killed" if r["killed"] else str(r["exit_code"])) for r in runs})
            listener = [None if r["listener_closed_s"] is None else r["listener_closed_s"] * 1000
                        for r in runs]
            close = (f"{sum(r['drain_conn_close'] for r in runs)}/"
                     f"{sum(r['drain_responses'] for r in runs)}")
            lines.append(
                f"| {scenario} | {conns} | {sig} | {server} "
                f"| {_per_run([x['ok'] for x in c])} | {_per_run([r['lost'] for r in runs])} "
                f"| {_per_run([r['race'] for r in runs])} "
                f"| {_per_run([x['refused'] for x in c])} | {_per_run([x['5xx'] for x in c])} "
                f"| {_per_run([x['timeout'] for x in c])} "
                f"| {_median([r['drain_s'] for r in runs], '.3f')} "
                f"| {_overhead(runs)} "
                f"| {_median(listener, '.0f')} | {close} | {','.join(exits)} "
                f"| {_median([r['p50_ms'] for r in runs], '.0f')}/"
                f"{_median([r['p99_ms'] for r in runs], '.0f')} |")
    return "\n".join(lines)


def latency_table(results: list[dict[str, Any]], base: str = "aiohttp") -> str:
    """Latency before the signal per server (medians over repeats): all requests, the
    first on each connection (its connect included) and the later ones; and the p99's
    overhead over the handler's own time against ``base``'s in the same repeat."""
    lines = ["| scenario | conns | signal | server | p50 | p99 | max | first p99 | later p99 "
             f"| unfinished | p99 overhead ms | overhead / {base}'s |",
             "|" + "---|" * 12]
    for (scenario, conns, sig), servers in groups(results).items():
        ref = {r["repeat"]: r for r in servers.get(base, [])}
        for server, runs in servers.items():
            over = [_p99_overhead(r) for r in runs]
            ratios = [o / b for r, o in zip(runs, over, strict=True)
                      if o is not None and (b := _p99_overhead(ref.get(r["repeat"]))) and b > 0]
            lines.append(
                f"| {scenario} | {conns} | {sig} | {server} "
                f"| {_median([r['p50_ms'] for r in runs], '.1f')} "
                f"| {_median([r['p99_ms'] for r in runs], '.1f')} "
                f"| {_median([r.get('max_ms') for r in runs], '.1f')} "
                f"| {_median([_phase(r, 'first') for r in runs], '.1f')} "
                f"| {_median([_phase(r, 'later') for r in runs], '.1f')} "
                f"| {_per_run([r.get('unfinished_before', 0) for r in runs])} "
                f"| {_per_run([None if o is None else round(o, 1) for o in over])} "
                f"| {_median(ratios, '.2f')} |")
    return "\n".join(lines)


def _phase(r: dict[str, Any], name: str) -> float | None:
    return r.get("latency_ms", {}).get(name, {}).get("p99")


def _p99_overhead(r: dict[str, Any] | None) -> float | None:
    if r is None or r.get("p99_ms") is None or r.get("nominal_ms") is None:
        return None
    return float(r["p99_ms"] - r["nominal_ms"])


def loss_summary(results: list[dict[str, Any]], base: str = "graceful") -> str:
    """Per server over all its runs: lost, races, drain overhead, and its drain time and
    overhead against ``base``'s in the same scenario, connections, signal and repeat."""
    total: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    overhead: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[float]] = defaultdict(list)
    diffs: dict[str, list[float]] = defaultdict(list)
    ref = {_key(r): r for r in results if r["server"] == base}
    for r in results:
        t = total[r["server"]]
        t[0] += r["lost"]
        t[1] += r["race"]
        t[2] += 1
        overhead[r["server"]].append(r["overhead_ms"])
        if (b := ref.get(_key(r))) is not None and b["drain_s"] > 0:
            ratios[r["server"]].append(r["drain_s"] / b["drain_s"])
            diffs[r["server"]].append(r["overhead_ms"] - b["overhead_ms"])
    lines = ["| server | runs | lost | keep-alive races | median drain overhead ms "
             f"| drain time / {base}'s (median) | overhead - {base}'s, ms (median) |",
             "|---|---|---|---|---|---|---|"]
    for server, (lost, race, runs) in total.items():
        lines.append(f"| {server} | {runs} | {lost} | {race} "
                     f"| {_median(list(overhead[server]), '.1f')} "
                     f"| {_median(list(ratios[server]), '.2f')} "
                     f"| {_median(list(diffs[server]), '+.0f')} |")
    return "\n".join(lines)


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["scenario"], r["connections"], r["signal"], r["repeat"], r["peer_defaults"])


def restart_table(results: list[dict[str, Any]]) -> str:
    """The restart runs (bench/restart.py) per scenario, connections and server: outcomes
    summed, latencies as the range over the runs. Control runs (`--control`: the same load,
    no signal) are rows of their own, "(no restart)" after the server's name."""
    lines = ["| scenario | conns | server | runs | ok | lost / refused / reset / race | 5xx "
             "| p99 before | window p50 | window p99 | window max | pause | hand-over s "
             "| hand-over p99 | serving after | count exact | pid kept | took-over wait "
             "| reconnections |",
             "|" + "---|" * 19]
    labelled = [r | {"server": _restart_label(r)} for r in results]
    for (scenario, conns, _), servers in groups(labelled).items():
        for server, runs in servers.items():
            c = [r["counts"] for r in runs]
            failed = "/".join(str(sum(v)) for v in (
                [r["lost"] for r in runs], [x["refused"] for x in c],
                [r["reset"] for r in runs], [r["race"] for r in runs]))
            counted = [r["count_exact"] for r in runs if "count_exact" in r]
            lines.append(
                f"| {scenario} | {conns} | {server} | {len(runs)} | {sum(x['ok'] for x in c)} "
                f"| {failed} | {sum(x['5xx'] for x in c)} "
                f"| {_range([r['p99_ms'] for r in runs])} | "
                + " | ".join(_range([r["window_ms"].get(k) for r in runs])
                             for k in ("p50", "p99", "max"))
                + f" | {_range([r['pause_ms'] for r in runs])} "
                f"| {_range([r['hand_over_s'] for r in runs], '.2f', '')} "
                f"| {_range([(r['hand_over_ms'] or {}).get('p99') for r in runs])} "
                f"| {sum(bool(r['serving_after']) for r in runs)} of {len(runs)} "
                f"| {f'{sum(counted)} of {len(counted)}' if counted else 'n/a'} "
                f"| {_kept(runs)} "
                f"| {_range([r.get('took_over_waited_ms') for r in runs])} "
                f"| {_reconnections(runs)} |")
    return "\n".join(lines)


def _reconnections(runs: list[dict[str, Any]]) -> str:
    """Connections the clients opened again after the signal, summed ("-" for results from
    before it was recorded)."""
    counted = [r["reconnections"] for r in runs if r.get("reconnections") is not None]
    return str(sum(counted)) if counted else "-"


def _kept(runs: list[dict[str, Any]]) -> str:
    """In how many runs the pid the harness started still ran after the window ("-" for
    control runs and results from before it was recorded)."""
    kept = [r["pid_kept"] for r in runs if "pid_kept" in r]
    return f"{sum(kept)} of {len(kept)}" if kept else "-"


def _restart_label(r: dict[str, Any]) -> str:
    if r.get("control"):
        return f"{r['server']} (no restart)"
    return f"{r['server']} `--checkpoint`" if r.get("checkpoint") else r["server"]


def restart_cost_table(results: list[dict[str, Any]]) -> str:
    """What the restart itself adds: per repeat, the window's p99 and max of the restart
    run minus those of the control run just before it (same server, load and window, no
    signal); the median over the repeats, and their range."""
    controls = {(r["scenario"], r["connections"], r["server"], r["repeat"]): r
                for r in results if r.get("control")}
    lines = ["| scenario | conns | server | pairs | window p99, no restart → restart "
             "| p99 added (median, range) | max added (median, range) |", "|" + "---|" * 7]
    rows: dict[tuple[str, int, str], list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for r in results:
        control = controls.get((r["scenario"], r["connections"], r["server"], r["repeat"]))
        if not r.get("control") and not r.get("checkpoint") and control is not None:
            rows.setdefault((r["scenario"], r["connections"], r["server"]), []).append(
                (control, r))
    for (scenario, conns, server), pairs in rows.items():
        p99 = [(r["window_ms"]["p99"], c["window_ms"]["p99"]) for c, r in pairs]
        added = {k: [r["window_ms"][k] - c["window_ms"][k] for c, r in pairs
                     if r["window_ms"].get(k) is not None and c["window_ms"].get(k) is not None]
                 for k in ("p99", "max")}
        lines.append(
            f"| {scenario} | {conns} | {server} | {len(pairs)} "
            f"| {_median([c for _, c in p99], '.0f')} → {_median([w for w, _ in p99], '.0f')} ms "
            + "".join(f"| {_median(v, '+.1f')} ms ({_range(v, '+.1f', '')}) "
                      for v in added.values()) + "|")
    return "\n".join(lines)


def _range(values: list[float | None], fmt: str = ".0f", unit: str = " ms") -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    low, high = format(min(present), fmt), format(max(present), fmt)
    return f"{low}{unit}" if low == high else f"{low}-{high}{unit}"


def _protocol(row: dict[str, Any]) -> str:
    cost = row.get("protocol")
    if not cost:
        return "- | - | -"
    return f"{cost['graceful_us']:.2f} | {cost['aiohttp_us']:.2f} | {cost['ratio']:.3f}"


def throughput_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| loop | graceful rps (median) | aiohttp rps (median) | ratio median "
             "| ratio min-max | CPU µs/req graceful | CPU µs/req aiohttp | CPU ratio (min-max) "
             "| p50/p99/max ms graceful | p50/p99/max ms aiohttp "
             "| in-process µs/req graceful | aiohttp | ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['loop']} | {row['graceful_rps']:.0f} | {row['aiohttp_rps']:.0f} "
            f"| {row['ratio_median']:.3f} | {row['ratio_min']:.3f}-{row['ratio_max']:.3f} "
            f"| {row['graceful_cpu_us']:.1f} | {row['aiohttp_cpu_us']:.1f} "
            f"| {row['cpu_ratio']:.3f}{_spread(row, 'cpu_ratio')} "
            f"| {_latencies(row, 'graceful')} | {_latencies(row, 'aiohttp')} "
            f"| {_protocol(row)} |")
    return "\n".join(lines)


def _spread(row: dict[str, Any], key: str) -> str:
    if f"{key}_min" not in row:
        return ""
    return f" ({row[f'{key}_min']:.3f}-{row[f'{key}_max']:.3f})"


def _latencies(row: dict[str, Any], server: str) -> str:
    if f"{server}_p99_ms" not in row:  # results from before the latencies were recorded
        return "-"
    return "/".join(f"{row[f'{server}_{f}']:.1f}" for f in ("p50_ms", "p99_ms", "max_ms"))


def workers_throughput_table(rows: list[dict[str, Any]]) -> str:
    """`bench throughput --variant workers`, as ratios within a round (medians, min-max over
    the rounds): graceful's requests/s over each server's with the same worker count, each
    server's CPU per request over graceful's, and its own 2 workers over 1 worker."""
    base = next((r["family"] for r in rows if r.get("base") == r["server"]), "graceful")
    lines = [f"| server | workers | {base} rps / this (median, min-max) "
             f"| CPU per request / {base}'s | 2 workers / 1 worker, rps | errors |",
             "|" + "---|" * 6]
    for r in rows:
        lines.append(
            f"| {r['server']} | {r['workers']} | {_ratio(r, 'base_over')} "
            f"| {_ratio(r, 'cpu_over_base')} | {_ratio(r, 'scale')} | {r['errors']:.0f} |")
    return "\n".join(lines)


def _ratio(row: dict[str, Any], key: str) -> str:
    if row.get(key) is None:
        return "-"
    return f"{row[key]:.2f} ({row[f'{key}_min']:.2f}-{row[f'{key}_max']:.2f})"


def _median_range(values: list[float]) -> str:
    spread = _range(values, ".2f", "")
    middle = _median(values, ".2f")
    return middle if spread == middle else f"{middle} ({spread})"


def restart_ratio_table(results: list[dict[str, Any]], base: str) -> str:
    """``base``'s window p99 and max over each other server's, per scenario and
    connections: the ratio per repeat (the servers of a repeat ran one after the other),
    its median and range. Below 1: ``base`` was faster through the restart."""
    runs = [r for r in results if not r.get("control") and not r.get("checkpoint")]
    ref = {(r["scenario"], r["connections"], r["repeat"]): r for r in runs
           if r["server"] == base}
    lines = [f"| scenario | conns | peer | pairs | {base} window p99 / peer's "
             f"| {base} window max / peer's |", "|" + "---|" * 6]
    for (scenario, conns, _), servers in groups(runs).items():
        for server, peer_runs in servers.items():
            if server == base:
                continue
            ratios: dict[str, list[float]] = {"p99": [], "max": []}
            for r in peer_runs:
                b = ref.get((scenario, conns, r["repeat"]))
                for k in ratios:
                    mine = (b or {}).get("window_ms", {}).get(k)
                    theirs = r["window_ms"].get(k)
                    if mine is not None and theirs:
                        ratios[k].append(mine / theirs)
            lines.append(f"| {scenario} | {conns} | {server} | {len(ratios['p99'])} "
                         + "".join(f"| {_median_range(v)} " if v
                                   else "| - (no window: it did not serve) "
                                   for v in ratios.values()) + "|")
    return "\n".join(lines)
