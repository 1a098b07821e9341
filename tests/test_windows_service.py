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
7. A failure before logging is set up (bad serve arguments, a deleted --app-dir, bad host
   arguments), with sys.stdout None as in a real service: graceful's exit code, a line in
   the log file when there is one, and always one in the Event Log; no STOPPED (recovery).
8. A log folder that cannot be created (the checkpoint's): the service runs, says so in the
   Event Log, and stops with graceful's code (4: the checkpoint could not be written).
9. START_PENDING advances during a slow on_startup, accepting STOP, with a wait hint from
   the startup budget (--startup-timeout, from the first report on), and stops advancing
   once the budget is spent.
10. A STOP during START_PENDING ends the start: exit 0, never RUNNING.
11. Nothing is reported after STOPPED (the checkpoint counter is no guard).
12. A port in use: service.failed and the Event Log name the address.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest
import structlog

from graceful import checkpoint as ckpt
from graceful.bridge import win32 as w
from graceful.errors import ExitCode
from graceful.windows.service_host import RotatingWriter, ServiceHost
from graceful.windows.service_status import ACCEPTED, HINT_SLACK_S, ServiceReporter
from tests.fake_win32 import FakeWin32
from tests.test_windows_harness import Background, free_port, get, logged, wait_until

ROOT = Path(__file__).resolve().parent.parent


def start_service(tmp_path: Path, *serve: str) -> tuple[FakeWin32, ServiceHost, Background,
                                                         str]:
    fake = FakeWin32()
    port = free_port()
    argv = ["GracefulTest", "--app-dir", str(ROOT), "--log-file", str(tmp_path / "svc.log"),
            "--", "tests.apps:basic", "--port", str(port), "--loop", "asyncio",
            "--checkpoint", str(tmp_path / "state.json"), *serve]
    host = ServiceHost(argv, fake, handle="ssh")
    runner = Background(host.run)
    wait_until(lambda: fake.statuses and fake.statuses[-1].state == w.SERVICE_RUNNING)
    return fake, host, runner, f"http://127.0.0.1:{port}"


def test_service_life(tmp_path, handlers):
    """1."""
    fake, host, runner, base = start_service(tmp_path, "--drain-timeout", "10")
    requests = handlers.hold(f"{base}/slow?s=1.6", 3)
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


def test_exit_code_is_the_service_specific_code(tmp_path, handlers):
    """2."""
    fake, host, runner, base = start_service(tmp_path, "--drain-timeout", "0.3",
                                             "--cancel-grace", "0.2")
    [request] = handlers.hold(f"{base}/slow?s=30")
    host.bridge.control(w.SERVICE_CONTROL_STOP)
    code = runner.outcome()
    assert code == ExitCode.DRAIN_DEADLINE
    assert host.final_report(code) is True
    final = fake.statuses[-1]
    assert (final.state, final.win32_exit_code, final.service_exit_code) == (
        w.SERVICE_STOPPED, w.ERROR_SERVICE_SPECIFIC_ERROR, 3)
    request.join(5)


def test_preshutdown_then_shutdown_forces(tmp_path, handlers):
    """3."""
    _, host, runner, base = start_service(tmp_path, "--drain-timeout", "30")
    [request] = handlers.hold(f"{base}/slow?s=30")
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
    fake = FakeWin32()
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
    fake = FakeWin32()
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


@pytest.fixture
def no_console(monkeypatch):
    """As under the SCM: no stdout, no stderr, structlog not configured yet."""
    monkeypatch.setattr(sys, "stdout", None)
    monkeypatch.setattr(sys, "stderr", None)
    structlog.reset_defaults()


def run_host(argv: list[str]) -> tuple[FakeWin32, ServiceHost, int]:
    fake = FakeWin32()
    host = ServiceHost(argv, fake, handle="ssh")
    return fake, host, Background(host.run).outcome()


@pytest.mark.parametrize(("serve", "app_dir", "code", "says"), [
    (["tests.apps:basic", "--port", "eighty"], str(ROOT), ExitCode.USAGE, "eighty"),
    (["tests.apps:basic"], "/no/such/app/dir", ExitCode.USAGE, "/no/such/app/dir"),
], ids=["bad-serve-argument", "deleted-app-dir"])
def test_failure_before_logging(tmp_path, no_console, serve, app_dir, code, says):
    """7."""
    log = tmp_path / "svc.log"
    fake, host, got = run_host(["GracefulTest", "--app-dir", app_dir, "--log-file", str(log),
                                "--", *serve])
    assert got == code
    assert host.final_report(got) is False  # nobody asked: the SCM's recovery runs
    assert w.SERVICE_STOPPED not in [s.state for s in fake.statuses]
    assert says in logged(log, "service.failed")["error"]
    assert logged(log, "service.exit")["code"] == code
    [(kind, message)] = fake.events
    assert kind == "error" and f"failed with exit code {int(code)}" in message and says in message


def test_failure_before_the_log_file_is_known(no_console):
    """7. Host arguments that do not parse: only the Event Log can say it."""
    fake, host, got = run_host(["GracefulTest", "--bogus", "--", "tests.apps:basic"])
    assert got == ExitCode.USAGE
    assert host.final_report(got) is False
    kinds = [kind for kind, _ in fake.events]
    assert kinds == ["error", "error"]
    assert "service.failed" in fake.events[0][1] and "--bogus" in fake.events[0][1]
    assert "failed with exit code 2" in fake.events[1][1]


def test_log_folder_cannot_be_created(tmp_path, no_console):
    """8. The service runs without its log (an Event Log warning names it) and stops as
    always. (A checkpoint folder that cannot be created is refused at start: exit 4.)"""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the folder should be")
    fake = FakeWin32()
    port = free_port()
    log_file = blocker / "sub" / "GracefulTest.log"
    host = ServiceHost(["GracefulTest", "--app-dir", str(ROOT), "--log-file", str(log_file),
                        "--", "tests.apps:basic", "--port", str(port), "--loop", "asyncio"],
                       fake, "ssh")
    runner = Background(host.run)
    wait_until(lambda: fake.statuses and fake.statuses[-1].state == w.SERVICE_RUNNING)
    assert get(f"http://127.0.0.1:{port}/fast")[0] == 200
    [(kind, message)] = fake.events
    assert kind == "warning" and str(log_file) in message
    host.bridge.control(w.SERVICE_CONTROL_STOP)
    code = runner.outcome()
    assert code == ExitCode.OK
    assert host.final_report(code) is True
    final = fake.statuses[-1]
    assert (final.state, final.win32_exit_code, final.service_exit_code) == (
        w.SERVICE_STOPPED, 0, 0)


def slow_start(tmp_path: Path) -> tuple[FakeWin32, ServiceHost, Background]:
    fake = FakeWin32()
    argv = ["GracefulTest", "--app-dir", str(ROOT), "--log-file", str(tmp_path / "svc.log"),
            "--", "tests.apps:slow_startup", "--port", str(free_port()), "--loop", "asyncio",
            "--startup-timeout", "40"]
    host = ServiceHost(argv, fake, handle="ssh")
    return fake, host, Background(host.run)


def test_start_progress(tmp_path):
    """9."""
    fake, host, runner = slow_start(tmp_path)
    wait_until(lambda: len(fake.statuses) >= 3)
    starting = list(fake.statuses)[:3]
    assert [s.state for s in starting] == [w.SERVICE_START_PENDING] * 3
    assert [s.checkpoint for s in starting] == [1, 2, 3]
    assert all(s.controls_accepted & w.SERVICE_ACCEPT_STOP for s in starting)
    assert [s.wait_hint_ms for s in starting] == [(40 + HINT_SLACK_S) * 1000] * 3
    fake.clock += 41  # the startup budget is spent: no more progress, the SCM's timeout shows it
    time.sleep(1.5)
    count = len(fake.statuses)
    time.sleep(1.5)
    assert len(fake.statuses) == count
    host.bridge.control(w.SERVICE_CONTROL_STOP)
    assert runner.outcome() == 0


def test_stop_during_start_pending(tmp_path):
    """10."""
    fake, host, runner = slow_start(tmp_path)
    wait_until(lambda: logged(tmp_path / "svc.log", "service.starting") and
               len(fake.statuses) >= 2)
    stop_at = time.monotonic()
    assert host.bridge.control(w.SERVICE_CONTROL_STOP) == 0
    assert runner.outcome() == 0
    assert time.monotonic() - stop_at < 5
    assert host.final_report(0)
    states = [s.state for s in fake.statuses]
    assert w.SERVICE_RUNNING not in states and states[-1] == w.SERVICE_STOPPED
    # no start tick after the stop: pending states only go forward
    assert w.SERVICE_START_PENDING not in states[states.index(w.SERVICE_STOP_PENDING):]
    assert logged(tmp_path / "svc.log", "start.abandoned") is not None


def test_nothing_after_stopped():
    """11."""
    fake = FakeWin32()
    reporter = ServiceReporter(fake, "ssh", stop_budget_s=10)
    reporter.ready()
    reporter.stop_pending()
    reporter.final(0)
    reporter.stop_pending()  # a late control, or the loop's last tick
    reporter.ready()
    assert [s.state for s in fake.statuses] == [
        w.SERVICE_RUNNING, w.SERVICE_STOP_PENDING, w.SERVICE_STOPPED]


def test_port_in_use_names_the_address(tmp_path, no_console):
    """12."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "svc.log"
        fake, _, code = run_host(["GracefulTest", "--app-dir", str(ROOT), "--log-file",
                                     str(log), "--", "tests.apps:basic", "--port", str(port),
                                     "--loop", "asyncio"])
    assert code != 0
    assert logged(log, "service.failed")["address"] == f"127.0.0.1:{port}"
    assert f"(address 127.0.0.1:{port})" in fake.events[-1][1]
