"""The service's log file on an operator's real day: it never raises into
the runtime, so the service can always be stopped.

1. Another process holds NAME.log open when it is due to rotate (a log viewer: Windows
   refuses the rename, WinError 32): lines go on into the current file, a log.rotate_failed
   line says so, the rotation is tried again ROTATE_RETRY_S later and succeeds once the
   viewer lets go; no line is lost.
2. A full disk (/dev/full: every write fails with ENOSPC): lines are dropped and counted,
   nothing raises.
3. A file that cannot be opened is tried again; the first line that gets through is a
   log.dropped line with the count.
4. The service with its log held open at rotation: `sc stop` still stops it, exit 0.
5. The service with a full log disk: it serves, stops with exit 0, and the Event Log says
   how many lines were dropped.
6. The service's log disk fills in the middle of a line (a 64 KiB tmpfs): the part of the
   line that got in is taken back, so that every line of the file is JSON; once there is
   room again a log.dropped line counts what was lost.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from graceful.bridge import win32 as w
from graceful.windows import service_host as ws
from graceful.windows import service_log
from graceful.windows.service_log import ROTATE_RETRY_S, RotatingWriter
from tests.fake_win32 import FakeWin32
from tests.test_windows_harness import Background, free_port, get, logged, wait_until

ROOT = Path(__file__).resolve().parent.parent


def line(n: int) -> str:
    return json.dumps({"event": "line", "n": n, "pad": "x" * 40}) + "\n"


def events(path: Path) -> list[dict]:
    return [json.loads(raw) for raw in path.read_text().splitlines()] if path.exists() else []


def test_rotation_while_another_process_holds_the_file(tmp_path):
    """1."""
    fake = FakeWin32()
    path = tmp_path / "x.log"
    writer = RotatingWriter(path, max_bytes=300, backups=10, replace=fake.replace_file,
                            clock=fake.monotonic)
    fake.open_elsewhere.add(str(path))
    for n in range(20):
        writer.write(line(n))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log"]
    assert writer.rotate_failures == 1  # not retried on every line
    failed = [e for e in events(path) if e["event"] == "log.rotate_failed"]
    assert len(failed) == 1 and "being used by another process" in failed[0]["error"]
    fake.open_elsewhere.clear()  # the viewer lets go
    writer.write(line(20))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log"]  # not before the retry
    fake.clock += ROTATE_RETRY_S
    writer.write(line(21))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log", "x.log.1"]
    for n in range(22, 40):
        writer.write(line(n))
    numbers = sorted(e["n"] for p in tmp_path.iterdir() for e in events(p) if "n" in e)
    assert numbers == list(range(40))
    assert writer.dropped == 0


def test_full_disk_drops_and_counts():
    """2."""
    writer = RotatingWriter(Path("/dev/full"), max_bytes=300)
    for n in range(3):
        assert writer.write(line(n)) == len(line(n))
    writer.flush()
    assert writer.dropped == 3
    assert "No space left on device" in writer.error


def test_reopen_and_report_dropped(tmp_path):
    """3."""
    fake = FakeWin32()
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the folder should be")
    writer = RotatingWriter(blocker / "x.log", clock=fake.monotonic)
    writer.write(line(0))
    writer.write("partial ")
    writer.write("line\n")  # print() writes the newline apart: still one line
    assert writer.dropped == 2
    blocker.unlink()
    fake.clock += service_log.REOPEN_RETRY_S
    writer.write(line(1))
    got = events(blocker / "x.log")
    assert [e["event"] for e in got] == ["log.dropped", "line"]
    assert got[0]["dropped"] == 2


def service(tmp_path: Path, fake: FakeWin32, log: str) -> tuple[ws.ServiceHost, Background,
                                                                  str]:
    port = free_port()
    host = ws.ServiceHost(["GracefulTest", "--app-dir", str(ROOT), "--log-file", log, "--",
                           "tests.apps:basic", "--port", str(port), "--loop", "asyncio",
                           "--access-log", "--checkpoint", str(tmp_path / "state.json")],
                          fake, handle="ssh")
    runner = Background(host.run)
    wait_until(lambda: fake.statuses and fake.statuses[-1].state == w.SERVICE_RUNNING)
    return host, runner, f"http://127.0.0.1:{port}"


def test_service_stops_with_its_log_held_open(tmp_path, monkeypatch):
    """4."""
    monkeypatch.setattr(ws, "LOG_MAX_BYTES", 2000)
    fake = FakeWin32()
    log = tmp_path / "svc.log"
    fake.open_elsewhere.add(str(log))
    host, runner, base = service(tmp_path, fake, str(log))
    for _ in range(20):
        assert get(f"{base}/fast")[0] == 200
    assert logged(log, "log.rotate_failed") is not None
    assert host.bridge.control(w.SERVICE_CONTROL_STOP) == 0
    assert runner.outcome(15) == 0
    assert host.final_report(0) is True
    assert fake.statuses[-1].state == w.SERVICE_STOPPED
    assert logged(log, "stop.requested")["source"] == "SCM_STOP"
    assert logged(log, "service.exit")["log_lines_dropped"] == 0


def test_service_with_a_full_log_disk(tmp_path):
    """5."""
    fake = FakeWin32()
    host, runner, base = service(tmp_path, fake, "/dev/full")
    assert get(f"{base}/fast")[0] == 200
    started = time.monotonic()
    assert host.bridge.control(w.SERVICE_CONTROL_STOP) == 0
    assert runner.outcome(15) == 0
    assert time.monotonic() - started < 5
    assert host.final_report(0) is True
    final = fake.statuses[-1]
    assert (final.state, final.service_exit_code) == (w.SERVICE_STOPPED, 0)
    [(kind, message)] = fake.events
    assert kind == "warning" and "lines dropped" in message and "No space left" in message


def test_a_disk_that_fills_mid_line_leaves_only_whole_lines(tmp_path, small_disk):
    """6."""
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * 40_000)
    fake = FakeWin32()
    log = small_disk / "svc.log"
    host, runner, base = service(tmp_path, fake, str(log))
    assert host.writer is not None
    while not host.writer.dropped:
        assert get(f"{base}/fast?pad={'p' * 100}")[0] == 200
    filler.unlink()
    fake.clock += service_log.REOPEN_RETRY_S
    assert get(f"{base}/fast")[0] == 200
    assert host.bridge.control(w.SERVICE_CONTROL_STOP) == 0
    assert runner.outcome(15) == 0
    raw = log.read_text()
    assert raw.endswith("\n")
    lines = [json.loads(text) for text in raw.splitlines()]  # a cut line would raise here
    assert "log.dropped" in [e["event"] for e in lines]
    assert lines[-1]["event"] == "service.exit"
