"""The Windows service host against the fake SCM, with the real runtime serving.

1. The life of a service: START_PENDING until bound, RUNNING accepting STOP, SHUTDOWN and
   PRESHUTDOWN; `sc stop` with requests in flight: they complete, STOP_PENDING checkpoints
   rise strictly at every phase and drain tick, wait hints follow the time left; STOPPED
   with exit 0; checkpoint and JSON log file written.
2. Our exit code becomes the service-specific exit code (a drain deadline: 3).
3. PRESHUTDOWN starts the drain; SHUTDOWN afterwards is the second request: force.
4. A STOP while starting is kept and stops the runtime as soon as it can.
5. A failure nobody asked for reports no STOPPED (the SCM's recovery actions run).
6. The log file rotates by size.
"""

from __future__ import annotations

import time
from pathlib import Path

from graceful import checkpoint as ckpt
from graceful.bridge import win32 as w
from graceful.bridge.windows_service import (
    ACCEPTED,
    HINT_SLACK_S,
    RotatingWriter,
    ServiceHost,
)
from graceful.errors import ExitCode
from tests.test_windows_harness import Background, free_port, get, logged, wait_until

ROOT = Path(__file__).resolve().parent.parent


def start_service(tmp_path: Path, *serve: str) -> tuple[w.FakeWin32, ServiceHost, Background,
                                                         str]:
    fake = w.FakeWin32()
    port = free_port()
    argv = ["GracefulTest", "--app-dir", str(ROOT), "--log-file", str(tmp_path / "svc.log"),
            "--", "tests.apps:basic", "--port", str(port), "--loop", "asyncio",
            "--checkpoint", str(tmp_path / "state.json"), *serve]
    host = ServiceHost(argv, fake, handle="ssh")
    runner = Background(host.run)
    wait_until(lambda: fake.statuses and fake.statuses[-1].state == w.SERVICE_RUNNING)
    return fake, host, runner, f"http://127.0.0.1:{port}"


def test_service_life(tmp_path):
    """1."""
    fake, host, runner, base = start_service(tmp_path, "--drain-timeout", "10")
    requests = [Background(lambda: get(f"{base}/slow?s=1.6")) for _ in range(3)]
    time.sleep(0.3)
    assert host.bridge.control(w.SERVICE_CONTROL_STOP) == 0  # answers at once
    assert runner.outcome() == 0
    assert [r.outcome() for r in requests] == [(200, "close", "slept 1.6\n")] * 3
    assert host.final_report(0) is True
    states = [s.state for s in fake.statuses]
    first_stop = states.index(w.SERVICE_STOP_PENDING)
    assert set(states[:first_stop - 1]) == {w.SERVICE_START_PENDING}
    assert states[first_stop - 1] == w.SERVICE_RUNNING
    assert fake.statuses[first_stop - 1].controls_accepted == ACCEPTED
    assert states[-1] == w.SERVICE_STOPPED
    pending = fake.statuses[first_stop:-1]
    assert {s.state for s in pending} == {w.SERVICE_STOP_PENDING}
    checkpoints = [s.checkpoint for s in pending]
    assert checkpoints == list(range(1, len(checkpoints) + 1))
    # phases (pre_stop, drain, hooks, checkpoint) and at least one drain tick reported
    assert len(pending) >= 6
    budget = 10 + 1 + 5 * 2 + 5  # the stop budget of these options
    hints = [s.wait_hint_ms / 1000 for s in pending]
    assert hints[0] == budget + HINT_SLACK_S
    assert all(HINT_SLACK_S <= h <= budget + HINT_SLACK_S for h in hints)
    assert hints[1:] == sorted(hints[1:], reverse=True)  # the time left only shrinks
    final = fake.statuses[-1]
    assert (final.win32_exit_code, final.service_exit_code, final.checkpoint) == (0, 0, 0)
    assert ckpt.read(tmp_path / "state.json").state == {"served": 3}
    assert logged(tmp_path / "svc.log", "server.started")["port"] == int(base.rsplit(":", 1)[1])
    assert logged(tmp_path / "svc.log", "service.exit")["stop_requested"] is True


def test_exit_code_is_the_service_specific_code(tmp_path):
    """2."""
    fake, host, runner, base = start_service(tmp_path, "--drain-timeout", "0.3",
                                             "--cancel-grace", "0.2")
    request = Background(lambda: get(f"{base}/slow?s=30"))
    time.sleep(0.3)
    host.bridge.control(w.SERVICE_CONTROL_STOP)
    code = runner.outcome()
    assert code == ExitCode.DRAIN_DEADLINE
    assert host.final_report(code) is True
    final = fake.statuses[-1]
    assert (final.state, final.win32_exit_code, final.service_exit_code) == (
        w.SERVICE_STOPPED, w.ERROR_SERVICE_SPECIFIC_ERROR, 3)
    request.join(5)


def test_preshutdown_then_shutdown_forces(tmp_path):
    """3."""
    _, host, runner, base = start_service(tmp_path, "--drain-timeout", "30")
    request = Background(lambda: get(f"{base}/slow?s=30"))
    time.sleep(0.3)
    host.bridge.control(w.SERVICE_CONTROL_PRESHUTDOWN)
    time.sleep(0.7)  # past the runtime's repeat filter
    assert runner.is_alive()
    host.bridge.control(w.SERVICE_CONTROL_SHUTDOWN)
    assert runner.outcome(10) == ExitCode.DRAIN_DEADLINE
    sources = [e for e in (tmp_path / "svc.log").read_text().splitlines() if "stop.requested" in e]
    assert "SCM_PRESHUTDOWN" in sources[0] and "SCM_SHUTDOWN" in sources[1]
    request.join(5)


def test_stop_while_starting(tmp_path):
    """4."""
    fake = w.FakeWin32()
    argv = ["GracefulTest", "--app-dir", str(ROOT), "--log-file", str(tmp_path / "svc.log"),
            "--", "tests.apps:slow_startup", "--port", str(free_port()), "--loop", "asyncio"]
    host = ServiceHost(argv, fake, handle="ssh")
    host.bridge.control(w.SERVICE_CONTROL_STOP)  # before the loop even exists
    assert Background(host.run).outcome() == 0
    assert host.final_report(0)
    assert w.SERVICE_RUNNING not in [s.state for s in fake.statuses]
    assert fake.statuses[-1].state == w.SERVICE_STOPPED


def test_unrequested_failure_reports_no_stopped(tmp_path):
    """5."""
    fake = w.FakeWin32()
    argv = ["GracefulTest", "--app-dir", str(ROOT), "--log-file", str(tmp_path / "svc.log"),
            "--", "tests.apps:failing_startup", "--port", str(free_port())]
    host = ServiceHost(argv, fake, handle="ssh")
    code = Background(host.run).outcome()
    assert code == ExitCode.ERROR
    assert host.final_report(code) is False
    assert w.SERVICE_STOPPED not in [s.state for s in fake.statuses]
    assert logged(tmp_path / "svc.log", "service.failed") is not None


def test_log_file_rotates(tmp_path):
    """6."""
    writer = RotatingWriter(tmp_path / "x.log", max_bytes=100, backups=2)
    for i in range(12):
        writer.write(f'{{"event": "line", "n": {i:02d}, "pad": "{"x" * 20}"}}\n')
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["x.log", "x.log.1", "x.log.2"]
    assert all(p.stat().st_size <= 100 + 60 for p in tmp_path.iterdir())
