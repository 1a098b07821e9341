"""Under Wine: b. the service, installed with `graceful service install`, started with
`net start`, stopped with `sc stop` while Linux clients have requests in flight: they
complete, `sc query` shows STOP_PENDING with rising checkpoints, the checkpoint file is
written, the service reaches STOPPED. Plus the service CLI's one-line errors."""

from __future__ import annotations

import time

from graceful import checkpoint as ckpt
from tests.wine.conftest import (
    ROOT,
    WIN_PY,
    Requests,
    read_events,
    sc_query,
    wait_for_event,
    wine,
    winpath,
)

NAME = "GracefulWineTest"


def graceful(*args: str):
    return wine(WIN_PY, "-m", "graceful", *args)


def test_b_service_stops_with_sc_stop(tmp_path):
    """b."""
    log = tmp_path / "svc.log"
    graceful("service", "remove", NAME)  # a leftover from an interrupted run, if any
    installed = graceful(
        "service", "install", NAME, "--startup", "manual", "--log-file", winpath(log),
        "--app-dir", winpath(ROOT), "--restart-on-failure", "5", "--",
        "tests.apps:basic", "--port", "0", "--loop", "winloop", "--drain-timeout", "20",
        "--checkpoint", winpath(tmp_path / "state.json"))
    assert installed.returncode == 0, installed
    try:
        again = graceful("service", "install", NAME, "--", "tests.apps:basic")
        assert again.returncode == 1
        assert "CreateService: " in again.stderr and "(Win32 error 1073)" in again.stderr, again
        assert wine("net", "start", NAME).returncode == 0
        port = wait_for_event(log, "server.started")["port"]
        assert sc_query(NAME).state == "RUNNING"
        requests = Requests([f"http://127.0.0.1:{port}/slow?s=4"] * 3)
        time.sleep(0.7)
        stopping = wine("sc", "stop", NAME)
        assert "STOP_PENDING" in stopping.stdout, stopping
        seen = []
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            seen.append(sc_query(NAME))
            if seen[-1].state == "STOPPED":
                break
        assert seen[-1].state == "STOPPED", seen
        pending = [s for s in seen if s.state == "STOP_PENDING"]
        assert pending, seen
        checkpoints = [s.checkpoint for s in pending]
        assert checkpoints == sorted(checkpoints) and len(set(checkpoints)) >= 2, seen
        assert all(0 < s.wait_hint <= (20 + 1 + 10 + 5 + 2) * 1000 for s in pending), seen
        assert requests.wait() == [(200, "close", "slept 4.0\n")] * 3
        assert ckpt.read(tmp_path / "state.json").state == {"served": 3}
        events = read_events(log)
        assert [e["source"] for e in events if e["event"] == "stop.requested"] == ["SCM_STOP"]
        assert [e["code"] for e in events if e["event"] == "service.exit"] == [0]
        print("sc query during the stop:", seen)
    finally:
        removed = graceful("service", "remove", NAME)
    assert removed.returncode == 0, removed
    missing = graceful("service", "remove", NAME)
    assert missing.returncode == 1 and "(Win32 error 1060)" in missing.stderr, missing
    assert len(missing.stderr.strip().splitlines()) == 1


def test_service_install_bad_target(tmp_path):
    result = graceful("service", "install", NAME, "--", "no_such_module:app")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"graceful service: error: cannot install {NAME}: cannot import module "
        "'no_such_module': no module named 'no_such_module'"]
