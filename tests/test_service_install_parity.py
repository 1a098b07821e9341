"""`graceful service install` on a par with nssm, against the fake SCM.

1. install sets the service's environment (--env KEY=VALUE, repeatable), its account
   (LocalSystem, LocalService, NetworkService, or a user with --password), its
   description and the services it depends on (--depends-on, repeatable); the app dir is
   its working directory (as nssm's AppDirectory).
2. A user account without --password asks for it (hidden), never on the command line.
3. A bad --env (no `=`) is refused with one line, nothing installed.
4. status prints the state, pid, start type, account, dependencies, recovery actions and
   the last exit code.
5. The service host sets the install's --env variables its SCM did not set.
"""

from __future__ import annotations

from click.testing import CliRunner

from graceful.bridge import win32 as w
from graceful.cli.service import service
from tests.fake_win32 import FakeWin32

SERVE = ["--", "tests.apps:basic", "--port", "9000"]


def invoke(fake, *args, input=None):
    return CliRunner().invoke(service, list(args), obj=fake, input=input)


def test_install_environment_account_description_dependencies():
    """1."""
    fake = FakeWin32()
    result = invoke(fake, "install", "Web", "--env", "DB_URL=postgres://db/x", "--env",
                    "MODE=prod", "--account", "NetworkService", "--description", "Orders API",
                    "--depends-on", "Tcpip", "--depends-on", "postgresql-x64-16", *SERVE)
    assert result.exit_code == 0, result.output
    spec = fake.services["Web"]
    assert spec.environment == (("DB_URL", "postgres://db/x"), ("MODE", "prod"))
    assert spec.account == "NT AUTHORITY\\NetworkService" and spec.password is None
    assert spec.description == "Orders API"
    assert spec.dependencies == ("Tcpip", "postgresql-x64-16")
    local = FakeWin32()
    assert invoke(local, "install", "Web", "--account", "LocalSystem", *SERVE).exit_code == 0
    assert local.services["Web"].account is None  # the SCM's LocalSystem


def test_user_account_asks_for_its_password():
    """2."""
    fake = FakeWin32()
    result = invoke(fake, "install", "Web", "--account", ".\\svc-orders", *SERVE,
                    input="s3cret\n")
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    spec = fake.services["Web"]
    assert (spec.account, spec.password) == (".\\svc-orders", "s3cret")


def test_bad_environment_is_refused():
    """3."""
    fake = FakeWin32()
    result = invoke(fake, "install", "Web", "--env", "NOEQUALS", *SERVE)
    assert result.exit_code == 2
    assert "KEY=VALUE" in result.output
    assert fake.services == {}


def test_status_prints_start_type_recovery_and_last_exit():
    """4."""
    fake = FakeWin32()
    assert invoke(fake, "install", "Web", "--startup", "delayed", "--restart-on-failure", "10",
                  "--account", "LocalService", "--depends-on", "Tcpip", *SERVE).exit_code == 0
    fake.service_states["Web"] = w.ServiceStatus(
        w.SERVICE_STOPPED, win32_exit_code=w.ERROR_SERVICE_SPECIFIC_ERROR, service_exit_code=3)
    lines = invoke(fake, "status", "Web").output.splitlines()
    assert lines[0].startswith("Web: STOPPED")
    assert "  start: auto (delayed), account NT AUTHORITY\\LocalService, depends on Tcpip" \
        in lines
    assert "  recovery: restart after 10s, 3 times; counts reset after 86400s" in lines
    assert "  last exit: 3 (service-specific; win32 1066)" in lines


def test_service_host_sets_its_environment(tmp_path, monkeypatch):
    """5. The host sets the variables given to install --env that its SCM did not (Wine's
    does not); one the SCM set is kept."""
    from graceful.windows.service_host import ServiceHost
    from tests.test_windows_harness import Background

    monkeypatch.setenv("KEPT", "from the SCM")
    monkeypatch.delenv("GREETING", raising=False)
    fake = FakeWin32()
    fake.services["Web"] = w.ServiceSpec("Web", "", "", (), environment=(
        ("GREETING", "hello"), ("KEPT", "from install")))
    host = ServiceHost(["Web", "--log-file", str(tmp_path / "x.log"), "--", "tests.apps:nope"],
                       fake, handle="ssh")
    Background(host.run).outcome()  # the target does not exist: the start fails after
    import os

    assert os.environ["GREETING"] == "hello" and os.environ["KEPT"] == "from the SCM"
    monkeypatch.delenv("GREETING")
