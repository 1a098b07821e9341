"""Under Wine: the service paused and continued through the SCM.

Wine's sc.exe has no pause or continue verb (it exits 1 and prints nothing: Wine 8's
programs/sc knows create, description, failure, delete, start, stop, query, sdset), so the
controls are sent with `graceful service pause|continue` (ControlService, as `sc pause`
would send them); the test notices the day Wine's sc learns them.

1. PAUSE: PAUSED once the pause has drained (`pause.done` in the log); CONTINUE: RUNNING
   and serving again, the same process and state.
2. `graceful service status` reads back the start type and the recovery actions from the
   (Wine) SCM.
"""

from __future__ import annotations

from tests.wine.conftest import (
    ROOT,
    WIN_PY,
    http_text,
    service_state,
    wait_for_event,
    wait_service_state,
    wine,
    winpath,
)

NAME = "GracefulWinePause"


def graceful(*args: str):
    return wine(WIN_PY, "-m", "graceful", *args)


def state() -> str:
    return service_state(NAME)


def wait_state(want: str, timeout: float = 30) -> str:
    return wait_service_state(NAME, want, timeout, poll=0.3)


def get(port: int, path: str, timeout: float = 5) -> str:
    return http_text(port, path, timeout)


def test_pause_and_continue(tmp_path):
    log = tmp_path / "svc.log"
    graceful("service", "remove", "--stop", NAME)  # a leftover, if any
    installed = graceful("service", "install", NAME, "--startup", "manual", "--log-file",
                         winpath(log), "--app-dir", winpath(ROOT), "--restart-on-failure", "5",
                         "--", "tests.apps:basic", "--port", "0", "--loop", "asyncio")
    assert installed.returncode == 0, installed
    try:
        assert wine("net", "start", NAME).returncode == 0
        port = wait_for_event(log, "server.started")["port"]
        assert get(port, "/count") == "1\n"
        sc_pause = wine("sc", "pause", NAME)
        assert (sc_pause.returncode, sc_pause.stdout) == (1, ""), "Wine's sc pauses now"
        paused = graceful("service", "pause", NAME)
        assert paused.returncode == 0 and "PAUSED" in paused.stdout, paused
        assert state() == "PAUSED"
        wait_for_event(log, "pause.done")
        continued = graceful("service", "continue", NAME)
        assert continued.returncode == 0 and "RUNNING" in continued.stdout, continued
        assert state() == "RUNNING"
        assert get(port, "/count") == "2\n"  # the same process, its state kept
        status = graceful("service", "status", NAME)
        assert status.returncode == 0, status
        assert "start: manual, account LocalSystem" in status.stdout, status.stdout
        assert "  recovery: " in status.stdout and "  last exit: " in status.stdout, status.stdout
        stopped = graceful("service", "stop", NAME)
        assert stopped.returncode == 0, stopped
    finally:
        graceful("service", "remove", "--stop", NAME, "--timeout", "30")


def test_install_environment_and_dependencies(tmp_path):
    """3. install --env reaches the service's process (Wine's SCM does not apply the
    Environment value: the host sets it); with --depends-on the service is installed and
    starts, but Wine's QueryServiceConfig gives no dependencies back (status: "-")."""
    log = tmp_path / "svc.log"
    name = NAME + "Env"
    graceful("service", "remove", "--stop", name)
    installed = graceful("service", "install", name, "--startup", "manual", "--log-file",
                         winpath(log), "--app-dir", winpath(ROOT), "--env", "GREETING=hello",
                         "--depends-on", "RpcSs", "--description", "pause test",
                         "--", "tests.apps:with_env", "--port", "0", "--loop", "asyncio")
    assert installed.returncode == 0, installed
    try:
        assert wine("net", "start", name).returncode == 0
        port = wait_for_event(log, "server.started")["port"]
        assert get(port, "/env?name=GREETING") == "hello"
        status = graceful("service", "status", name)
        assert status.returncode == 0 and "depends on " in status.stdout, status.stdout
        assert graceful("service", "stop", name).returncode == 0
    finally:
        graceful("service", "remove", "--stop", name, "--timeout", "30")
