"""`graceful service ...` against the fake SCM (ctx.obj), and on Linux for real.

1. On a non-Windows machine: exit 2, one line saying it is Windows only.
2. install: the SCM gets the host command with the serve arguments after `--`, the
   startup type, recovery actions and a preshutdown timeout from the stop budget.
3. Installing a name that exists, removing one that does not: one line with the Win32 text.
4. A serve target that does not import: exit 2, one line, nothing installed.
5. start, status and stop print the states.
6. Settings from the installing shell (GRACEFUL_*) are resolved into the service's command
   line: what install prints is what runs; the host reads no GRACEFUL_* of its own
   environment; `status` shows the effective options.
7. `stop` exits with the service's own exit code (3, 4...), 1 for a crash (1067).
8. `remove` on a running service refuses (exit 1, still installed); `remove --stop` stops
   it first and exits with its exit code.
9. `restart` stops the service (its drain) and starts it again; a stop that exited 3 is
   said, and the start goes on; a stopped service is just started.
10. `stop`, `restart`, `remove --stop` during a stop wait for it (the SCM refuses a second).
11. `continue` while PAUSE_PENDING is sent; one that ends PAUSED exits 1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from graceful.bridge import win32 as w
from graceful.cli.main import main
from graceful.cli.service import parse_serve, service
from graceful.windows.service_host import parse_host_args
from tests.fake_win32 import FakeWin32

ROOT = Path(__file__).resolve().parent.parent
SERVE = ["--", "tests.apps:basic", "--port", "9000", "--drain-timeout", "12"]


def invoke(fake, *args):
    return CliRunner().invoke(service, list(args), obj=fake)


def test_windows_only_on_linux():
    """1."""
    result = CliRunner().invoke(main, ["service", "status", "x"])
    assert result.exit_code == 2
    assert result.output.strip() == "graceful service: error: graceful service is Windows only " \
        "(this is linux)"


def test_install_spec():
    """2."""
    fake = FakeWin32()
    result = invoke(fake, "install", "Web", "--startup", "delayed", "--restart-on-failure", "10",
                    *SERVE)
    assert result.exit_code == 0, result.output
    spec = fake.services["Web"]
    assert (spec.start_type, spec.delayed_start, spec.restart_delay_s) == (
        w.SERVICE_AUTO_START, True, 10.0)
    assert spec.display_name == "graceful Web"
    assert "graceful.windows.service_host" in spec.command_line  # -m, or -c in a venv
    assert " Web --app-dir " in spec.command_line
    assert spec.command_line.endswith("-- tests.apps:basic --port 9000 --drain-timeout 12")
    budget = 12 + 1 + 5 * 2 + 5
    assert spec.preshutdown_timeout_ms == (budget + 5) * 1000


def test_exists_and_missing_are_one_line_errors():
    """3."""
    fake = FakeWin32()
    assert invoke(fake, "install", "Web", *SERVE).exit_code == 0
    again = invoke(fake, "install", "Web", *SERVE)
    assert again.exit_code == 1
    assert again.output.strip() == ("graceful service: error: CreateService: The specified "
                                    "service already exists (Win32 error 1073)")
    assert invoke(fake, "remove", "Web").exit_code == 0
    missing = invoke(fake, "remove", "Web")
    assert missing.exit_code == 1 and len(missing.output.strip().splitlines()) == 1
    assert "(Win32 error 1060)" in missing.output


def test_bad_target():
    """4."""
    fake = FakeWin32()
    result = invoke(fake, "install", "Web", "--", "no_such_module:app")
    assert result.exit_code == 2
    assert result.output.strip() == ("graceful service: error: cannot install Web: cannot "
                                     "import module 'no_such_module': no module named "
                                     "'no_such_module'")
    assert fake.services == {}


def test_start_status_stop():
    """5."""
    fake = FakeWin32()
    invoke(fake, "install", "Web", *SERVE)
    assert invoke(fake, "start", "Web").output.strip() == "Web: RUNNING pid=42"
    assert invoke(fake, "status", "Web").output.splitlines()[0] == "Web: RUNNING pid=42"
    stopped = invoke(fake, "stop", "Web")
    assert stopped.exit_code == 0
    assert stopped.output.splitlines() == [
        "Web: STOP_PENDING checkpoint=1 wait_hint_ms=1000", "Web: STOPPED"]


def test_install_resolves_the_shell_settings(monkeypatch, tmp_path):
    """6."""
    fake = FakeWin32()
    monkeypatch.setenv("GRACEFUL_DRAIN_TIMEOUT", "120")
    monkeypatch.setenv("GRACEFUL_PRE_STOP_DELAY", "3")
    monkeypatch.chdir(tmp_path.parent)
    result = CliRunner().invoke(service, ["install", "Web", "--app-dir", str(ROOT), "--",
                                          "tests.apps:basic", "--checkpoint",
                                          f"{tmp_path.name}/state.json"], obj=fake)
    assert result.exit_code == 0, result.output
    assert "stop budget 139s, preshutdown timeout 144000 ms" in result.output
    argv = fake.services["Web"].argv
    assert argv[argv.index("--") + 1:] == (
        "tests.apps:basic", "--drain-timeout", "120", "--pre-stop-delay", "3",
        "--checkpoint", str(tmp_path / "state.json"))
    # The service itself: another GRACEFUL_* in its environment changes nothing.
    monkeypatch.setenv("GRACEFUL_DRAIN_TIMEOUT", "5")
    monkeypatch.setenv("GRACEFUL_PORT", "1234")
    host = parse_host_args(list(argv[3:]))
    config = parse_serve(host.serve, environ=False).config
    assert (config.drain_timeout, config.pre_stop_delay, config.port, config.stop_budget) == (
        120, 3, 8080, 139)
    assert host.log_file == tmp_path / "Web.log"
    status = invoke(fake, "status", "Web").output.splitlines()
    assert status[0] == "Web: STOPPED"
    assert status[1].startswith("  serve tests.apps:basic host=127.0.0.1 port=8080 "
                                "drain_timeout=120.0 pre_stop_delay=3.0 ")
    assert status[2] == f"  stop budget 139s, app dir {ROOT}, logs {tmp_path / 'Web.log'}"


@pytest.mark.parametrize(("stopped", "code"), [
    (w.ServiceStatus(w.SERVICE_STOPPED), 0),
    (w.ServiceStatus(w.SERVICE_STOPPED, 0, w.ERROR_SERVICE_SPECIFIC_ERROR, 3), 3),
    (w.ServiceStatus(w.SERVICE_STOPPED, 0, w.ERROR_SERVICE_SPECIFIC_ERROR, 4), 4),
    (w.ServiceStatus(w.SERVICE_STOPPED, 0, w.ERROR_PROCESS_ABORTED), 1),
], ids=["clean", "drain-deadline", "checkpoint", "crash"])
def test_stop_exits_with_the_service_code(stopped, code):
    """7."""
    fake = FakeWin32()
    invoke(fake, "install", "Web", *SERVE)
    invoke(fake, "start", "Web")
    fake.stop_results["Web"] = stopped
    result = invoke(fake, "stop", "Web")
    assert result.exit_code == code, result.output


def test_remove_a_running_service():
    """8."""
    fake = FakeWin32()
    invoke(fake, "install", "Web", *SERVE)
    invoke(fake, "start", "Web")
    refused = invoke(fake, "remove", "Web")
    assert refused.exit_code == 1
    assert refused.output.strip() == ("graceful service: error: Web is RUNNING: stop it first "
                                      "(graceful service stop Web), or remove it with --stop")
    assert "Web" in fake.services
    fake.stop_results["Web"] = w.ServiceStatus(w.SERVICE_STOPPED, 0,
                                               w.ERROR_SERVICE_SPECIFIC_ERROR, 3)
    removed = invoke(fake, "remove", "--stop", "Web")
    assert removed.exit_code == 3
    assert removed.output.splitlines()[-1] == "removed Web"
    assert "Web" not in fake.services and not fake.marked_for_deletion


def test_install_keeps_listening_and_tls_options(tmp_path, monkeypatch):
    """Repeated --bind kept in order, --unix-socket-mode written back in octal, TLS files
    made absolute (the service does not start in this folder), the --config file passed on
    (absolute) rather than its values, which the service reads at each start: what
    `graceful service install` puts on the service's command line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "graceful.toml").write_text("drain-timeout = 7\n")
    parsed = parse_serve(["app:x", "--config", "graceful.toml", "--bind", "127.0.0.1:80",
                          "--bind", "unix:/run/a.sock", "--unix-socket-mode", "660",
                          "--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem"], environ=False)
    assert parsed.options == [
        "--config", str(tmp_path / "graceful.toml"), "--bind", "127.0.0.1:80",
        "--bind", "unix:/run/a.sock", "--unix-socket-mode", "660",
        "--ssl-certfile", str(tmp_path / "c.pem"), "--ssl-keyfile", str(tmp_path / "k.pem")]
    assert parse_serve(["app:x", *parsed.options], environ=False).config == parsed.config
    (tmp_path / "graceful.toml").write_text("drain-timeout = 9\n")  # edited after install
    assert parse_serve(["app:x", *parsed.options], environ=False).config.drain_timeout == 9


def test_restart_stops_then_starts():
    """9."""
    fake = FakeWin32()
    invoke(fake, "install", "Web", *SERVE)
    invoke(fake, "start", "Web")
    restarted = invoke(fake, "restart", "Web")
    assert restarted.exit_code == 0, restarted.output
    assert restarted.output.splitlines() == [
        "Web: STOP_PENDING checkpoint=1 wait_hint_ms=1000", "Web: STOPPED", "Web: RUNNING pid=42"]
    fake.stop_results["Web"] = w.ServiceStatus(w.SERVICE_STOPPED, 0,
                                               w.ERROR_SERVICE_SPECIFIC_ERROR, 3)
    cut = invoke(fake, "restart", "Web")
    assert cut.exit_code == 0
    assert "Web: the stop exited with 3" in cut.output
    assert cut.output.splitlines()[-1] == "Web: RUNNING pid=42"
    fake.stop_results.pop("Web")
    invoke(fake, "stop", "Web")
    assert invoke(fake, "restart", "Web").output.splitlines() == ["Web: RUNNING pid=42"]


class StoppingSCM(FakeWin32):
    """A service already STOP_PENDING (another operator's stop), STOPPED with `code` after
    a few queries; a second STOP is refused as Windows refuses it (1061)."""

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code, self.queries = code, 0

    def query_service(self, name: str) -> w.ServiceStatus:
        status = super().query_service(name)
        if status.state == w.SERVICE_STOP_PENDING:
            self.queries += 1
            if self.queries > 3:
                self.service_states[name] = w.ServiceStatus(
                    w.SERVICE_STOPPED, 0, w.ERROR_SERVICE_SPECIFIC_ERROR if self.code else 0,
                    self.code)
                return self.service_states[name]
        return status

    def control_service(self, name: str, control: int) -> w.ServiceStatus:
        if self.service_states[name].state == w.SERVICE_STOP_PENDING:
            raise w.Win32Error("ControlService", 1061, "cannot accept control message")
        return super().control_service(name, control)


@pytest.mark.parametrize("command", [["stop"], ["restart"], ["remove", "--stop"]])
def test_a_stop_under_way_is_waited_for(command, monkeypatch):
    """10. stop, restart and remove --stop while STOP_PENDING wait for that stop (the SCM
    refuses a second STOP), then do what was asked; stop exits with that stop's code."""
    monkeypatch.setattr("graceful.cli.service.POLL_S", 0)
    fake = StoppingSCM(code=3)
    invoke(fake, "install", "Web", *SERVE)
    fake.service_states["Web"] = w.ServiceStatus(w.SERVICE_STOP_PENDING, checkpoint=4,
                                                 wait_hint_ms=9000, pid=42)
    result = invoke(fake, *command, "Web")
    lines = result.output.splitlines()
    assert lines[0] == "Web: a stop is already under way (STOP_PENDING); waiting for it"
    assert "Web: STOPPED win32_exit=1066 exit_code=3" in lines
    assert result.exit_code == {"stop": 3, "restart": 0, "remove": 3}[command[0]], result.output
    assert lines[-1] == {"stop": "Web: STOPPED win32_exit=1066 exit_code=3",
                         "restart": "Web: RUNNING pid=42", "remove": "removed Web"}[command[0]]


def test_continue_while_pausing_and_after_a_failed_resume(monkeypatch):
    """11. continue is sent to a service still PAUSE_PENDING; a continue that ends PAUSED
    (the service could not listen again) exits 1 and says where to look."""
    monkeypatch.setattr("graceful.cli.service.POLL_S", 0)
    fake = FakeWin32()
    invoke(fake, "install", "Web", *SERVE)
    fake.service_states["Web"] = w.ServiceStatus(w.SERVICE_PAUSE_PENDING, pid=42)
    continued = invoke(fake, "continue", "Web")
    assert continued.exit_code == 0, continued.output
    assert continued.output.splitlines()[-1] == "Web: RUNNING pid=42"
    failing = FakeWin32()
    invoke(failing, "install", "Web", *SERVE)
    failing.service_states["Web"] = w.ServiceStatus(w.SERVICE_PAUSED, pid=42)
    monkeypatch.setattr(failing, "control_service", lambda name, control: w.ServiceStatus(
        w.SERVICE_CONTINUE_PENDING, checkpoint=1, wait_hint_ms=1000))
    refused = invoke(failing, "continue", "Web")
    assert refused.exit_code == 1
    assert refused.output.splitlines()[-2] == "Web: PAUSED pid=42"
    assert "Web is still PAUSED: it could not accept again (resume.failed in its log " \
        in refused.output
