"""`graceful service ...` against the fake SCM (ctx.obj), and on Linux for real.

1. On a non-Windows machine: exit 2, one line saying it is Windows only.
2. install: the SCM gets the host command with the serve arguments after `--`, the
   startup type, recovery actions and a preshutdown timeout from the stop budget.
3. Installing a name that exists, removing one that does not: one line with the Win32 text.
4. A serve target that does not import: exit 2, one line, nothing installed.
5. start, status and stop print the states.
"""

from __future__ import annotations

from click.testing import CliRunner

from graceful.bridge import win32 as w
from graceful.cli import main
from graceful.service_cli import service

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
    fake = w.FakeWin32()
    result = invoke(fake, "install", "Web", "--startup", "delayed", "--restart-on-failure", "10",
                    *SERVE)
    assert result.exit_code == 0, result.output
    spec = fake.services["Web"]
    assert (spec.start_type, spec.delayed_start, spec.restart_delay_s) == (
        w.SERVICE_AUTO_START, True, 10.0)
    assert spec.display_name == "graceful Web"
    assert "graceful.bridge.windows_service" in spec.command_line  # -m, or -c in a venv
    assert " Web --app-dir " in spec.command_line
    assert spec.command_line.endswith("-- tests.apps:basic --port 9000 --drain-timeout 12")
    budget = 12 + 1 + 5 * 2 + 5
    assert spec.preshutdown_timeout_ms == (budget + 5) * 1000


def test_exists_and_missing_are_one_line_errors():
    """3."""
    fake = w.FakeWin32()
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
    fake = w.FakeWin32()
    result = invoke(fake, "install", "Web", "--", "no_such_module:app")
    assert result.exit_code == 2
    assert result.output.strip() == ("graceful service: error: cannot install Web: cannot "
                                     "import module 'no_such_module': no module named "
                                     "'no_such_module'")
    assert fake.services == {}


def test_start_status_stop():
    """5."""
    fake = w.FakeWin32()
    invoke(fake, "install", "Web", *SERVE)
    assert invoke(fake, "start", "Web").output.strip() == "Web: RUNNING pid=42"
    assert invoke(fake, "status", "Web").output.strip() == "Web: RUNNING pid=42"
    stopped = invoke(fake, "stop", "Web")
    assert stopped.exit_code == 0
    assert stopped.output.splitlines() == [
        "Web: STOP_PENDING checkpoint=1 wait_hint_ms=1000", "Web: STOPPED"]
