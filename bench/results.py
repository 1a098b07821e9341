"""``python -m bench report``: bench/RESULTS.md from the JSON files of earlier runs, with
the commands, versions and date they carry, and the PNGs regenerated next to it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import report


def _env_lines(env: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
    return [f"- `{env['command']}`", f"  - {env['date']}; Python {env['python']}, "
            f"{env['platform']}, {env['cpus']} CPUs", f"  - {versions}"]


def startup_section(doc: dict[str, Any]) -> list[str]:
    from bench import startup

    rows = [startup.StartTimes(r["server"], r["seconds"],
                               [c / 1000 for c in [r["cpu_median_ms"]] if c is not None])
            for r in doc["rows"]]
    return ["## Start time (exec to the first 200)", "", *_env_lines(doc["env"]), "",
            "Each server started in turn, the order reversed every other round (A B C C B "
            "A ...), the same app; wall time from the exec to the first `GET /` answered "
            "200, and the CPU time the process had used by then (the scheduler's count, its "
            "median over the starts; steadier than the wall time on a shared machine). The "
            "CPU is the first process's only: hypercorn and granian serve from child "
            "processes, whose CPU it does not count.", "",
            startup.table(rows), ""]


def crash_section(doc: dict[str, Any]) -> list[str]:
    from bench import crash

    return ["## Crash recovery (kill -9 under load)", "", *_env_lines(doc["env"]), "",
            "graceful serving a counter kept in its checkpoint, 20 clients sending "
            "increments back to back for 2.5 s, then SIGKILL and a restart on the same "
            "port and checkpoint, at once or 1 s later. *in flight at kill*: requests sent "
            "and never answered (unavoidable). *increments lost*: the highest value a "
            "client was answered minus the value restored, also as the time of load it "
            "stands for. *restored file's age*: from its write to the restore.", "",
            crash.table(doc["runs"]), ""]


STREAM_ABOUT = (
    "Clients hold server-sent-event streams (`GET /events`, an event every 100 ms) and 20 "
    "more loop keep-alive GETs (100 ms handler); once every stream is open and has had "
    "events for 1 s, the server gets SIGTERM; every server's drain timeout is 3 s (peers: "
    "their option for it). A stream is *clean* when the terminating chunk came, *truncated* "
    "when the connection closed without it before the deadline, *cut at deadline* when at "
    "it (graceful logs these in `drain.deadline`), *killed* when still open 8 s after it. "
    "*graceful-stopping* serves the same app with `/events` watching `graceful.stopping`; "
    "*graceful* and the peers serve the stream that never ends by itself. *overhead*: exit "
    "minus the end of the last stream or GET in flight at the signal. *drain / aiohttp*: "
    "the drain time over aiohttp's `web.run_app` in the same repeat (the machine is "
    "shared: a ratio within one repeat is steadier than a time).")


def stream_section(doc: dict[str, Any]) -> list[str]:
    from bench.stream import table

    return ["## Streams at SIGTERM (`python -m bench stream`)", "", STREAM_ABOUT, "",
            table(doc["runs"]), ""]


RESTART_ABOUT = (
    "Clients under load (keep-alive, or a new connection per request: `restart-close`) on "
    "300 ms handlers, SIGHUP 1.3 s into the load, every server restarted by its own SIGHUP "
    "(bench/servers.py says how each does it: graceful's supervisor keeps its pid, starts "
    "new workers and drains the old ones once they are ready; gunicorn's HUP: new workers, "
    "then the old ones stop; uvicorn `--workers 2`: its rolling restart, one worker at a "
    "time; granian: each worker respawned in turn, the old one stopped 3.5 s after the new "
    "one started; hypercorn: all workers stopped, then new ones started, the socket held by "
    "its parent; uvicorn with one process exits), the servers of a repeat one after the "
    "other. The *window* is the same for every server: the requests started in the "
    "`--window` seconds after the signal; graceful's *hand-over* (the signal to the exit of "
    "its last old worker) lies within it. *pause*: the longest request of the window beyond "
    "the handler's time. *reset*: the lost and raced attempts that ended in a reset. *pid "
    "kept*: the process the harness started (graceful's supervisor, the peers' parent) still "
    "ran after the window. *(no restart)* rows (`--control`): the same server, load and "
    "window just before, with no signal; their table is the restart run's window minus "
    "that, per repeat. *count exact* (`--checkpoint`, graceful with one worker: it refuses "
    "more): the counter graceful's app keeps in its checkpoint equals the 200s the clients "
    "got; *took-over wait*: the new worker's wait for the old one's drain and final flush "
    "before it accepts (`restart.took_over` waited_s). *reconnections*: the connections the "
    "clients had to open again after the signal (keep-alive scenarios; in restart-close "
    "every request opens one). The ratio table: graceful's window "
    "p99 and max over each peer's in the same repeat (below 1: graceful was faster).")
RESTART_BASE = "graceful-uvloop-workers2"


def restart_section(docs: list[dict[str, Any]], notes: str = "") -> list[str]:
    """The restart runs of one or more `bench drain --scenario restart...` files."""
    lines = ["## Restart in place (`bench drain --scenario restart,restart-close`)", ""]
    for doc in docs:
        lines += _env_lines(doc["env"])
    lines += ["", RESTART_ABOUT, ""]
    if notes:
        lines += [notes.rstrip(), ""]
    for doc in docs:
        runs = [r for r in doc["runs"] if r["signal"] == "SIGHUP"]
        lines += [f"`{doc['env']['command']}`:", "", report.restart_table(runs), ""]
        if any(r["server"] == RESTART_BASE for r in runs) and len({r["server"] for r in runs}) > 1:
            lines += [report.restart_ratio_table(runs, RESTART_BASE), ""]
        if any(r.get("control") for r in runs):
            lines += [report.restart_cost_table(runs), ""]
    return lines


WORKERS_HEADING = "## Throughput with workers (`bench throughput --variant workers`)"
WORKERS_ABOUT = (
    "Each server in turn (the order reversed every other round), the same app, `GET "
    "/work?ms=0` on 64 keep-alive connections from `wrk` (one thread: a C client costs less "
    "CPU per request than the bench's Python client, leaving more of the cores to the "
    "servers). Every figure is a ratio within a round, median and range over the rounds "
    "(the requests/s, CPU and latency themselves are in the JSON file): *graceful rps / "
    "this*: graceful's requests/s (with the same worker count) over this server's; *CPU per "
    "request*: the CPU time of the server and all its processes over the requests wrk "
    "counted, over graceful's; *2 workers / 1 worker*: the server's own. **This machine has "
    "2 cores, and wrk runs on them too**: a 2-worker over 1-worker ratio is bounded well "
    "below 2 by the load generator sharing the cores (and by the other developers' "
    "processes on the machine), so it says little about scaling on a larger machine.")


def workers_section(doc: dict[str, Any], notes: str = "") -> list[str]:
    lines = [WORKERS_HEADING, "", *_env_lines(doc["env"]), "", WORKERS_ABOUT, ""]
    if notes:
        lines += [notes.rstrip(), ""]
    from bench.throughput import workers_rows  # from the raw runs: the ratios per round

    return [*lines, report.workers_throughput_table(workers_rows(doc["runs"])), ""]


def update(target: Path, startup_file: Path | None = None, crash_file: Path | None = None,
           throughput_file: Path | None = None,
           restart_files: list[Path] | None = None, notes: str = "") -> None:
    """Rewrite only these sections of an existing RESULTS.md, from their JSON files; the
    others (and their JSON files, which need not be at hand) are left as they are. `notes`
    (markdown) goes after the explanation of the restart or the workers throughput section
    (only one of them should be given with notes)."""
    text = target.read_text()
    for file, section in ((startup_file, startup_section), (crash_file, crash_section)):
        if file is not None:
            text = _replace_section(text, section(json.loads(file.read_text())))
    if restart_files:
        text = _replace_section(text, restart_section(
            [json.loads(f.read_text()) for f in restart_files], notes))
    target.write_text(text)
    if throughput_file is not None:
        doc = json.loads(throughput_file.read_text())
        if doc["rows"] and doc["rows"][0].get("variant") == "workers":
            target.write_text(_replace_section(target.read_text(), workers_section(doc, notes)))
        else:
            update_throughput(throughput_file, target)


def _replace_section(text: str, lines: list[str]) -> str:
    """`text` with the section headed `lines[0]` (up to the next `## ` heading) replaced by
    `lines`; appended before the plots when there is none."""
    heading = lines[0]
    new = "\n".join(lines) + "\n"
    start = text.find(heading + "\n")
    if start < 0:
        start = end = text.find("## Plots\n") if "## Plots\n" in text else len(text)
    else:
        end = text.find("\n## ", start + len(heading))
        end = len(text) if end < 0 else end + 1
    return text[:start] + new + text[end:]


THROUGHPUT_HEADING = "## Throughput (no stop)"


def update_throughput(throughput_file: Path, target: Path) -> None:
    """Replace `target`'s throughput section, and its command in the list of runs, by
    `throughput_file`'s run; the rest (drain runs, streams, plots) is left as it was."""
    thr = json.loads(throughput_file.read_text())
    lines = target.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("- `python -m bench throughput"))
    lines[at:at + 3] = _env_lines(thr["env"])  # the command, its date and versions
    start = lines.index(THROUGHPUT_HEADING)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
    lines[start:end] = [THROUGHPUT_HEADING, "", report.throughput_table(thr["rows"]), ""]
    target.write_text("\n".join(lines) + "\n")


def write(drain_files: list[Path], throughput_file: Path | None, target: Path,
          notes: Path | None, stream_file: Path | None = None,
          startup_file: Path | None = None, crash_file: Path | None = None) -> list[Path]:
    from bench import plots  # matplotlib: update() does without it

    images = target.parent / "results"
    images.mkdir(parents=True, exist_ok=True)
    docs = [json.loads(p.read_text()) for p in drain_files]
    runs = [r for d in docs for r in d["runs"]]
    lines = ["# Drain and throughput benchmark: latest results", "",
             "Made by `python -m bench report` from the runs below (one machine, one "
             "sitting; the commands are exact).", "", "## Commands, versions, date", ""]
    for d in docs:
        lines += _env_lines(d["env"])
    thr = json.loads(throughput_file.read_text()) if throughput_file else None
    if thr:
        lines += _env_lines(thr["env"])
    streams = json.loads(stream_file.read_text()) if stream_file else None
    if streams:
        lines += _env_lines(streams["env"])
    if notes is not None:
        lines += ["", notes.read_text().rstrip()]
    lines += ["", "## Lost requests and keep-alive races, all drain runs", "",
              report.loss_summary(runs), "", "## Drain runs", "",
              "Per-run values are comma-separated (one per repeat); drain and overhead are "
              "medians. *overhead*: drain time (signal to process exit) minus the longest "
              "in-flight work at the signal; negative when the server quit before its "
              "in-flight work could finish. *stops accepting*: first connect refused after "
              "the signal. *`Connection: close`*: responses completed after the signal "
              "that carried it.", "", report.drain_table(runs), "",
              "## Latency before the signal", "",
              "Milliseconds, medians over repeats. *first*: each connection's first request, "
              "its connect included; *later*: the requests after it on the same connection; "
              "*unfinished*: requests written more than one handler time (+0.2 s) before the "
              "signal and not answered by it, counted at the age they had reached. *p99 "
              "overhead*: p99 minus the handler's own time, per repeat.", "",
              report.latency_table(runs), ""]
    if thr:
        lines += [THROUGHPUT_HEADING, "", report.throughput_table(thr["rows"]), ""]
    if streams:
        lines += stream_section(streams)
    if startup_file:
        lines += startup_section(json.loads(startup_file.read_text()))
    if crash_file:
        lines += crash_section(json.loads(crash_file.read_text()))
    made = [plots.summary_grid(runs, images), plots.loss_bars(runs, images),
            *plots.timelines(runs, images)]
    lines += ["## Plots", ""]
    for path in made:
        rel = path.relative_to(target.parent)
        lines += [f"![{path.stem}]({rel.as_posix()})", ""]
    target.write_text("\n".join(lines))
    return made
