"""`graceful timeline LOGFILE`: one run's JSON events as a one-screen picture of the stop.

    run pid 4242 on 127.0.0.1:8080, started 2026-01-01 12:00:00 UTC
    serving 12.345s, then the stop took 2.406s: exit 3 (work was cut)
    stop 1 SIGTERM graceful   +0.000s
    stop 2 SIGTERM force      +1.730s
                     start    took  |0s                               2.406s|
    pre_stop        +0.000  0.000s  |                                       |
    drain           +0.000  1.730s  |████████████████████████████           |
    ...
    in flight    2 max              |▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▆▃▃▃▃▃▃▃▃▃▃▃▃            |

Phases are read from the events that end them (DESIGN.md's order): listeners.closed ends
pre_stop, drain.done (or the forcing stop, or drain.deadline) the drain, drain.deadline
the cancel, hooks.done the hooks, checkpoint.flushed the checkpoint, process.exit the exit.
The in-flight count comes from the access log when there is one (--access-log: a request
answered after the stop counts from its start, or the stop, to its answer), else from
drain.progress (once a second), 0 from drain.done. A log holds several runs; after a restart
the old and the new workers write to it at once, and each event joins its pid's run (the
supervisor's own events join none).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from graceful.errors import ConfigError, GracefulError
from graceful.escaping import escape

WIDTH = 80
LABEL, BAR = 32, 44  # columns before the bar, and of the bar
SPARK = " ▁▂▃▄▅▆▇█"
# took_ms comes from the event loop's clock, the timestamps from the wall clock; uvloop's
# counts milliseconds and is read once per loop turn, so a request that began just before
# the stop can seem to begin a few milliseconds after it.
CLOCK_SLACK_S = 0.005
EXIT_MEANING = {0: "clean", 1: "error", 2: "usage", 3: "work was cut",
                4: "checkpoint failed", 5: "hook failed"}


class TimelineError(GracefulError):
    """The file holds no run to draw (exit 1)."""


@dataclasses.dataclass(frozen=True)
class Span:
    name: str
    start: float  # seconds from the first stop request
    end: float


@dataclasses.dataclass
class Run:
    events: list[dict[str, Any]]
    t0: float  # the first stop.requested, as a POSIX timestamp
    spans: list[Span]
    stops: list[dict[str, Any]]
    samples: list[tuple[float, int]]  # (seconds from t0, requests in flight)

    @property
    def end(self) -> float:
        return max([0.001, *(span.end for span in self.spans),
                    *(at(e) - self.t0 for e in self.events[-1:])])

    def first(self, name: str) -> dict[str, Any] | None:
        return next((e for e in self.events if e.get("event") == name), None)


def at(event: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(event["timestamp"]).timestamp()


def read_runs(lines: Iterable[str]) -> list[list[dict[str, Any]]]:
    """The JSON events of each run in a log, in the order the runs began.

    Under graceful serve the workers and their supervisor write to one log, and after a
    restart an old worker drains while a new one serves: an event joins the run of its
    `pid`, and the supervisor's events join none. A process's run begins at its first event and
    a later server.started of the same process (run again) begins another. Lines without a
    pid (logs of older versions name it only in server.started) join the latest run.
    """
    runs: list[list[dict[str, Any]]] = []
    of_pid: dict[Any, list[dict[str, Any]]] = {}
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and "event" in event and "timestamp" in event:
            events.append(event)
    # graceful serve's supervisor writes to the same log and serves nothing: a run is a
    # worker's (each worker of a restart is a run of its own)
    supervisors = {e.get("pid") for e in events if str(e["event"]).startswith("supervisor.")}
    for event in events:
        pid = event.get("pid")
        if pid is not None and pid in supervisors:
            continue
        run = of_pid.get(pid) if pid is not None else (runs[-1] if runs else None)
        if run is None or (event["event"] == "server.started"
                           and any(e["event"] == "server.started" for e in run)):
            run = []
            runs.append(run)
        if pid is not None:
            of_pid[pid] = run
        run.append(event)
    return runs


def analyse(events: list[dict[str, Any]]) -> Run:
    stops = [e for e in events if e["event"] == "stop.requested"]
    if not stops:
        raise TimelineError("this run has no stop.requested event: nothing to draw")
    t0 = at(stops[0])

    def when(name: str, **match: Any) -> float | None:
        for event in events:
            if event["event"] == name and all(event.get(k) == v for k, v in match.items()):
                return at(event) - t0
        return None

    spans: list[Span] = []
    cursor = 0.0

    def phase(name: str, end: float | None) -> None:
        nonlocal cursor
        if end is not None and end >= cursor:
            spans.append(Span(name, cursor, end))
            cursor = end

    phase("pre_stop", when("listeners.closed"))
    forced = when("stop.requested", attempt=2)
    drained = when("drain.done")
    cut = when("drain.deadline")
    if drained is not None:
        phase("drain", drained)
    elif cut is not None:
        phase("drain", forced if forced is not None and forced < cut else None)
        if not spans or spans[-1].name != "drain":
            phase("drain + cancel", cut)
    phase("cancel", cut)
    phase("hooks", when("hooks.done"))
    phase("checkpoint", when("checkpoint.flushed") or when("checkpoint.failed"))
    phase("exit", when("process.exit"))
    samples = _from_access_log(events, t0, end=drained if drained is not None else cut)
    if samples:
        return Run(events, t0, spans, stops, samples)
    for event in events:
        if event["event"] == "drain.progress" and (
                not samples or samples[-1][1] != int(event["in_flight"])):
            samples.append((at(event) - t0, int(event["in_flight"])))
    end = drained if drained is not None else cut  # nothing runs after either
    if end is not None and (not samples or samples[-1][1] != 0):
        samples.append((end, 0))
    return Run(events, t0, spans, stops, samples)


def _from_access_log(events: list[dict[str, Any]], t0: float,
                     end: float | None) -> list[tuple[float, int]]:
    """With --access-log, the in-flight count over the stop: each request answered after the
    stop (http.access: its end, and its start `took_ms` before) counts from its start (or
    the stop) to its answer, and each one cancelled at the deadline until then. Requests
    that came and went during a pre-stop delay count only while they ran."""
    if end is None:
        return []
    spans = [(at(e) - t0 - float(e.get("took_ms") or 0) / 1e3, at(e) - t0) for e in events
             if e["event"] == "http.access" and 0 <= at(e) - t0 <= end]
    if not spans:
        return []
    cut = next((e for e in events if e["event"] == "drain.deadline"), None)
    if cut is not None:
        cut_at = at(cut) - t0
        ages = [float(r.get("age_s") or cut_at) for r in cut.get("requests", [])]
        ages += [cut_at] * (int(cut.get("cancelled", 0)) - len(ages))
        spans += [(cut_at - age, end) for age in ages]
    steps = sorted([(0.0 if start < CLOCK_SLACK_S else start, 1) for start, _ in spans]
                   + [(stop, -1) for _, stop in spans])
    samples: list[tuple[float, int]] = []
    count = 0
    for when, change in steps:
        count += change
        if samples and samples[-1][0] == when:
            samples[-1] = (when, count)
        else:
            samples.append((when, count))
    if samples[0][0] > 0:
        samples.insert(0, (0.0, 0))
    return samples


def render(run: Run) -> str:
    started, exited = run.first("server.started"), run.first("process.exit")
    total = run.end
    lines = []
    head = "run"
    if started is not None:
        head += (f" pid {started.get('pid')} on {started.get('host', '?')}:"
                 f"{started.get('port')}, started {_clock(started)}")
    lines.append(head[:WIDTH])
    serving = f"serving {at(run.stops[0]) - at(started):.3f}s, then " if started else ""
    ending = ""
    if exited is not None:
        code = exited.get("code")
        ending = f": exit {code} ({EXIT_MEANING.get(code, '?')})"
    lines.append(f"{serving}the stop took {total:.3f}s{ending}")
    for stop in run.stops[:3]:
        lines.append(f"stop {stop.get('attempt', '?')} {stop.get('source', '?')} "
                     f"{stop.get('mode', '?')}".ljust(24) + f" +{at(stop) - run.t0:.3f}s")
    scale = f"|0s{f'{total:.3f}s|':>{BAR - 3}}"
    lines.append(f"{'':<16}{'start':>7} {'took':>7}  {scale}")
    for span in run.spans[:10]:
        lines.append(f"{span.name:<16}{f'+{span.start:.3f}':>7} "
                     f"{f'{span.end - span.start:.3f}s':>7}  |{_bar(span, total)}|")
    if run.samples:
        peak = max(n for _, n in run.samples)
        lines.append(f"{'in flight':<16}{f'{peak} max':>15}  |{_spark(run.samples, total, peak)}|")
        lines.append("  samples: " + ", ".join(f"{n} at +{t:.1f}s"
                                               for t, n in run.samples[:6]))
    cut = run.first("drain.deadline")
    if cut is not None and cut.get("cancelled"):
        names = ", ".join(escape(f"{r.get('method')} {r.get('path')}")
                          for r in cut.get("requests", []))
        lines.append(f"cancelled {cut['cancelled']}: {names}"[:WIDTH])
    hooks = run.first("hooks.done")
    if hooks is not None and hooks.get("failed"):
        lines.append(escape(f"hooks failed: {', '.join(hooks['failed'])}")[:WIDTH])
    return "\n".join(line[:WIDTH] for line in lines[:24])


def _columns(total: float) -> list[float]:
    return [total * (i + 0.5) / (BAR - 2) for i in range(BAR - 2)]


def _bar(span: Span, total: float) -> str:
    cells = "".join("█" if span.start <= t < span.end else " " for t in _columns(total))
    if span.end > span.start and "█" not in cells:  # shorter than a column: still seen
        index = min(int(span.start / total * (BAR - 2)), BAR - 3)
        cells = cells[:index] + "▏" + cells[index + 1:]
    return cells


def _spark(samples: list[tuple[float, int]], total: float, peak: int) -> str:
    cells = []
    for t in _columns(total):
        known = [n for when, n in samples if when <= t]
        if not known:
            cells.append(" ")
            continue
        level = round(known[-1] / peak * (len(SPARK) - 1)) if peak else 0
        cells.append(SPARK[max(level, 1) if known[-1] else 0] if known[-1] else "·")
    return "".join(cells)


def _clock(event: dict[str, Any]) -> str:
    return datetime.datetime.fromisoformat(event["timestamp"]).strftime("%Y-%m-%d %H:%M:%S %Z")


def load(path: Path, run_number: int | None = None) -> Run:
    try:
        text = path.read_text(errors="replace")
    except OSError as err:
        raise TimelineError(f"cannot read {path}: {err.strerror or err}") from err
    runs = read_runs(text.splitlines())
    if not runs:
        raise TimelineError(f"{path} holds no JSON events (log with --log-format json)")
    if run_number is not None and not 1 <= run_number <= len(runs):
        raise ConfigError(f"--run must be between 1 and {len(runs)}")
    return analyse(runs[(run_number or len(runs)) - 1])


def png(run: Run, out: Path) -> Path:
    """The same picture as a PNG: matplotlib (the bench extra)."""
    try:
        import matplotlib
    except ModuleNotFoundError:
        raise ConfigError("--png needs matplotlib (the bench extra): pip install matplotlib"
                          ) from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (phases, flight) = plt.subplots(2, 1, figsize=(9, 4), sharex=True,
                                         gridspec_kw={"height_ratios": [2, 1]})
    for row, span in enumerate(reversed(run.spans)):
        phases.barh(row, span.end - span.start, left=span.start, color=f"C{row}")
        phases.text(span.end, row, f" {span.name} {span.end - span.start:.3f}s",
                    va="center", fontsize=8)
    phases.set_yticks([])
    for stop in run.stops:
        for axis in (phases, flight):
            axis.axvline(at(stop) - run.t0, color="grey", linestyle=":", linewidth=1)
    if run.samples:
        flight.step([t for t, _ in run.samples], [n for _, n in run.samples], where="post")
    flight.set_ylabel("in flight")
    flight.set_xlabel("seconds from the stop request")
    phases.set_title("graceful: the stop")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
