"""`graceful timeline LOGFILE`: one run's JSON events as a one-screen text timeline.

1. A real run (SIGTERM with two requests in flight, then a second stop cutting the longer
   one): the phases with their durations, in order; the stops marked; the in-flight count
   over time; the exit code; at most 24 lines of at most 80 columns.
2. A file holding two runs shows the last one, `--run 1` the first.
3. A file without a stop, or not a log at all, says so (exit 1, one line).
4. `--png` draws a PNG with matplotlib (the bench extra); without it, a usage error
   naming the extra (exit 2).
5. With --access-log, the in-flight count steps down at each answer, from the stop on.
6. With a pre-stop delay, requests that came and went during it are counted only while
   they ran: one client sending one request after another is at most one in flight.
7. After a restart the old process's stop and the new one's are two runs (split by pid),
   not one; and a path quoted from the log cannot write a line of its own.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.rawhttp import Connection


def timeline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "graceful", "timeline", *args],
                          capture_output=True, text=True, timeout=60)


async def test_a_real_run_as_a_timeline(serve, tmp_path):
    """1."""
    server = serve("tests.apps:basic", "--drain-timeout", "10")
    await server.hold("/slow?s=1.2")
    await server.hold("/slow?s=30")
    server.stop()
    await (server.held[0]).response()
    server.stop()  # the second stop cancels /slow?s=30
    assert await server.exited() == 3
    log = tmp_path / "run.log"
    log.write_text("".join(server.raw))

    done = timeline(str(log))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) <= 24 and max(map(len, lines)) <= 80, done.stdout
    text = done.stdout
    assert "exit 3 (work was cut)" in text
    order = [text.index(f"\n{word} ") for word in ("drain", "cancel", "hooks", "exit")]
    assert order == sorted(order), text
    assert "stop 1 SIGTERM graceful" in text and "stop 2 SIGTERM force" in text
    assert "in flight" in text and "2" in text.split("in flight", 1)[1]
    assert "cancelled 1: GET /slow" in text


def test_two_runs_in_one_file(tmp_path):
    """2."""
    def run(pid: int, code: int) -> str:
        stamp = f"2026-01-01T00:00:0{code}"
        events = [
            {"event": "server.started", "pid": pid, "port": 1, "timestamp": f"{stamp}Z"},
            {"event": "stop.requested", "source": "SIGTERM", "mode": "graceful", "attempt": 1,
             "timestamp": f"{stamp}.5Z"},
            {"event": "process.exit", "code": code, "timestamp": f"{stamp}.6Z"},
        ]
        return "".join(json.dumps(event) + "\n" for event in events)
    log = tmp_path / "two.log"
    log.write_text(run(11, 1) + "not json\n" + run(22, 4))
    assert "pid 22" in timeline(str(log)).stdout
    first = timeline(str(log), "--run", "1")
    assert "pid 11" in first.stdout and "exit 1" in first.stdout


def test_no_stop_or_no_log(tmp_path):
    """3."""
    log = tmp_path / "no-stop.log"
    log.write_text('{"event": "server.started", "pid": 1, "port": 1, '
                   '"timestamp": "2026-01-01T00:00:00Z"}\n')
    done = timeline(str(log))
    assert done.returncode == 1 and "no stop.requested" in done.stderr
    (tmp_path / "junk.log").write_text("hello\n")
    done = timeline(str(tmp_path / "junk.log"))
    assert done.returncode == 1 and "no JSON events" in done.stderr


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is not None,
                    reason="matplotlib is installed here")
def test_png_without_matplotlib(tmp_path):
    """4."""
    log = tmp_path / "run.log"
    log.write_text('{"event": "stop.requested", "timestamp": "2026-01-01T00:00:00Z"}\n')
    done = timeline(str(log), "--png", str(tmp_path / "out.png"))
    assert done.returncode == 2
    assert "pip install matplotlib" in done.stderr and "\n" not in done.stderr.strip()


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                    reason="matplotlib is not installed here (the bench extra)")
def test_png_with_matplotlib(tmp_path):
    """4. With the bench extra, --png draws the same run."""
    log = tmp_path / "run.log"
    log.write_text('{"event": "stop.requested", "timestamp": "2026-01-01T00:00:00Z"}\n'
                   '{"event": "listeners.closed", "timestamp": "2026-01-01T00:00:00.2Z"}\n'
                   '{"event": "drain.progress", "in_flight": 3, '
                   '"timestamp": "2026-01-01T00:00:01.2Z"}\n'
                   '{"event": "drain.done", "timestamp": "2026-01-01T00:00:01.5Z"}\n')
    done = timeline(str(log), "--png", str(tmp_path / "out.png"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"


async def test_in_flight_from_the_access_log(serve, tmp_path):
    """5. Three requests of 0.3, 0.6 and 0.9 s at the stop: 3, 2, 1, 0 at each answer."""
    server = serve("tests.apps:basic", "--access-log", "--drain-timeout", "10")
    for seconds in (0.3, 0.6, 0.9):
        await server.hold(f"/slow?s={seconds}")
    server.stop()
    await server.assert_held_answered()
    assert await server.exited() == 0
    log = tmp_path / "run.log"
    log.write_text("".join(server.raw))
    text = timeline(str(log)).stdout
    assert "3 max" in text, text
    samples = text.split("samples: ", 1)[1].splitlines()[0]
    assert [s.split(" at ")[0] for s in samples.split(", ")] == ["3", "2", "1", "0"], text


async def test_pre_stop_delay_counts_only_what_was_in_flight(serve, tmp_path):
    """6. One /slow?s=1.5 held at the stop, and one client sending /fast after /fast
    through a 1 s pre-stop delay: at most 3 in flight (the held one, and two /fast for the
    instant between an answer sent and its access line written), not one per answer."""
    server = serve("tests.apps:basic", "--access-log", "--pre-stop-delay", "1",
                   "--drain-timeout", "10")
    held = await server.hold("/slow?s=1.5")
    server.stop()
    await asyncio.sleep(0.05)  # the client's first request clearly after the stop
    answered = 0
    deadline = time.monotonic() + 0.85
    while time.monotonic() < deadline:
        response = await server.get("/fast")
        assert response.status == 200
        answered += 1
    assert (await held.response()).status == 200
    assert await server.exited() == 0
    assert answered >= 5
    log = tmp_path / "run.log"
    log.write_text("".join(server.raw))
    text = timeline(str(log)).stdout
    peak = int(re.search(r"in flight +(\d+) max", text).group(1))  # type: ignore[union-attr]
    assert 1 <= peak <= 3, text


async def test_a_restart_is_two_runs_split_by_pid(serve, tmp_path):
    """7."""
    server = serve("tests.apps:logs_what_it_is_sent", "--drain-timeout", "10")
    old = server.wait_for("supervisor.ready")["workers"][0]
    await server.hold("/wait/first?s=0.3")
    server.signal(signal.SIGHUP)
    (new,) = (await server.event("restart.done", 30))["workers"]
    conn = await Connection.open(server.port)  # served by the new worker
    conn.send("GET", "/wait/x%0a2000-01-01T00:00:00Z%20forged?s=30")
    await asyncio.sleep(0.3)
    server.signal(signal.SIGTERM)
    time.sleep(0.6)  # graceful ignores a repeat within 0.5 s
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 3
    conn.close()
    log = tmp_path / "run.log"
    log.write_text("".join(server.raw))
    last, first = timeline(str(log)), timeline(str(log), "--run", "1")
    assert f"pid {new}" in last.stdout and "stop 1 SIGTERM graceful" in last.stdout, \
        last.stdout
    assert "RESTART" not in last.stdout and "exit 3" in last.stdout, last.stdout
    assert "cancelled 1: GET /wait/x\\n2000-01-01" in last.stdout, last.stdout
    assert not any(line.startswith("2000") for line in last.stdout.split("\n"))
    assert f"pid {old}" in first.stdout and "stop 1 RESTART" in first.stdout, \
        first.stdout
    assert "exit 0" in first.stdout, first.stdout
