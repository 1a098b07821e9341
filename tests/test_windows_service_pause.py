"""SERVICE_CONTROL_PAUSE and CONTINUE against the fake SCM, with the real runtime serving.

1. RUNNING accepts PAUSE_CONTINUE (START_PENDING does not). PAUSE: PAUSE_PENDING, the
   request in flight completes, then PAUSED; CONTINUE: CONTINUE_PENDING, then RUNNING and
   serving, the state kept.
2. A STOP while paused is a normal stop: STOP_PENDING, STOPPED with exit 0, the
   checkpoint written.
3. `graceful service pause|continue NAME` send the controls and wait for PAUSED / RUNNING;
   one already there is left as it is (exit 0); a stopped one is refused (exit 1).
"""

from __future__ import annotations

from click.testing import CliRunner

from graceful import checkpoint as ckpt
from graceful.bridge import win32 as w
from graceful.cli.service import service
from tests.fake_win32 import FakeWin32
from tests.test_windows_harness import get, wait_until
from tests.test_windows_service import start_service


def _last_state(fake: FakeWin32) -> int:
    return fake.statuses[-1].state


def test_pause_and_continue(tmp_path, handlers):
    """1."""
    fake, host, runner, base = start_service(tmp_path)
    assert get(f"{base}/count")[2] == "1\n"
    running = fake.statuses[-1]
    assert running.controls_accepted & w.SERVICE_ACCEPT_PAUSE_CONTINUE
    assert not any(s.controls_accepted & w.SERVICE_ACCEPT_PAUSE_CONTINUE
                   for s in fake.statuses if s.state == w.SERVICE_START_PENDING)
    [slow] = handlers.hold(f"{base}/slow?s=0.8")
    assert host.bridge.control(w.SERVICE_CONTROL_PAUSE) == 0
    pending = fake.statuses[-1]
    assert (pending.state, pending.checkpoint) == (w.SERVICE_PAUSE_PENDING, 1)
    assert pending.wait_hint_ms > 0
    wait_until(lambda: _last_state(fake) == w.SERVICE_PAUSED)
    assert slow.outcome() == (200, "close", "slept 0.8\n")
    assert fake.statuses[-1].controls_accepted & w.SERVICE_ACCEPT_PAUSE_CONTINUE
    assert host.bridge.control(w.SERVICE_CONTROL_CONTINUE) == 0
    assert w.SERVICE_CONTINUE_PENDING in [s.state for s in fake.statuses[-2:]]
    wait_until(lambda: _last_state(fake) == w.SERVICE_RUNNING)
    assert get(f"{base}/count")[2] == "2\n"
    assert host.bridge.control(w.SERVICE_CONTROL_STOP) == 0
    assert runner.outcome() == 0


def test_stop_while_paused(tmp_path):
    """2."""
    fake, host, runner, base = start_service(tmp_path)
    assert get(f"{base}/count")[2] == "1\n"
    host.bridge.control(w.SERVICE_CONTROL_PAUSE)
    wait_until(lambda: _last_state(fake) == w.SERVICE_PAUSED)
    assert host.bridge.control(w.SERVICE_CONTROL_STOP) == 0
    assert _last_state(fake) == w.SERVICE_STOP_PENDING
    assert runner.outcome() == 0
    assert host.final_report(0) is True
    assert _last_state(fake) == w.SERVICE_STOPPED
    assert ckpt.read(tmp_path / "state.json").state["count"] == 1


def test_cli_pause_and_continue():
    """3."""
    fake = FakeWin32()
    runner = CliRunner()
    assert runner.invoke(service, ["install", "Web", "--", "tests.apps:basic"],
                         obj=fake).exit_code == 0
    assert runner.invoke(service, ["start", "Web"], obj=fake).exit_code == 0
    paused = runner.invoke(service, ["pause", "Web"], obj=fake)
    assert paused.exit_code == 0, paused.output
    assert paused.output.splitlines()[-1].startswith("Web: PAUSED")
    assert fake.query_service("Web").state == w.SERVICE_PAUSED
    again = runner.invoke(service, ["continue", "Web"], obj=fake)
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[-1].startswith("Web: RUNNING")
    assert runner.invoke(service, ["continue", "Web"], obj=fake).exit_code == 0  # as asked
    assert runner.invoke(service, ["stop", "Web"], obj=fake).exit_code == 0
    stopped = runner.invoke(service, ["pause", "Web"], obj=fake)
    assert stopped.exit_code == 1
    assert "Web is STOPPED, not running" in stopped.output
