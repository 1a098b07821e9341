"""Under Wine: the service paused and continued with `sc pause` / `sc continue` (issue 12).

1. `sc pause`: PAUSED once the pause has drained (`pause.done` in the log); nothing is
   answered while paused; `sc continue`: RUNNING and serving again.
2. `graceful service pause|continue` do the same; `graceful service status` reads back the
   start type, account and recovery actions from the real (Wine) SCM.
"""

from __future__ import annotations

import re
import time
import urllib.request

from tests.wine.conftest import ROOT, WIN_PY, wait_for_event, wine, winpath

NAME = "GracefulWinePause"


def graceful(*args: str):
    return wine(WIN_PY, "-m", "graceful", *args)


def state() -> str:
    out = wine("sc", "query", NAME).stdout
    found = re.search(r"STATE\s*:\s*\d+\s+(\w+)", out)
    return found.group(1) if found else out.strip()


def wait_state(want: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while (now := state()) != want and time.monotonic() < deadline:
        time.sleep(0.3)
    return now


def get(port: int, path: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return response.read().decode()


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
        paused = wine("sc", "pause", NAME)
        assert paused.returncode == 0, paused
        assert wait_state("PAUSED") == "PAUSED"
        wait_for_event(log, "pause.done")
        continued = wine("sc", "continue", NAME)
        assert continued.returncode == 0, continued
        assert wait_state("RUNNING") == "RUNNING"
        assert get(port, "/count") == "2\n"  # the same process, its state kept
        cli_pause = graceful("service", "pause", NAME)
        assert cli_pause.returncode == 0 and "PAUSED" in cli_pause.stdout, cli_pause
        cli_continue = graceful("service", "continue", NAME)
        assert cli_continue.returncode == 0 and "RUNNING" in cli_continue.stdout, cli_continue
        status = graceful("service", "status", NAME)
        assert status.returncode == 0, status
        assert "start: manual" in status.stdout and "recovery: restart after 5s" in \
            status.stdout, status.stdout
        stopped = graceful("service", "stop", NAME)
        assert stopped.returncode == 0, stopped
    finally:
        graceful("service", "remove", "--stop", NAME, "--timeout", "30")
