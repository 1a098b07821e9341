"""Under Wine, the service on an operator's real day:

1. the log rotation with a second handle on NAME.log (Wine gives the sharing violation,
   WinError 32): lines go on into the current file, the rotation succeeds once the handle
   is gone; the service with its log folder on a full (tiny tmpfs) disk serves and stops
   with `graceful service stop`, exit 0, and logs again once there is room;
2. a failure before logging is set up (the --app-dir deleted after install): the log file
   has service.failed and the exit code 2, the process ends without reporting STOPPED
   (Windows' SCM then reports STOPPED with 1067 and runs the recovery actions; Wine's
   services.exe only does that for a process that was RUNNING, so here the service stays
   START_PENDING), and never pywin32's own STOPPED 0x20000001;
3. GRACEFUL_* of the installing shell are on the service's command line: `service status`
   (QueryServiceConfig + CommandLineToArgvW) shows them, and the stop's wait hint comes
   from them;
4. `graceful service stop` exits with the service's code (3: drain deadline), `remove` on a
   running service refuses, `remove --stop` stops it first;
5. a slow on_startup: START_PENDING's checkpoint rises, and `sc stop` during START_PENDING
   ends the start (Wine's SCM delivers STOP to a START_PENDING service that accepts it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from tests.wine.conftest import (
    ROOT,
    WIN_PY,
    Requests,
    read_events,
    sc_query,
    service_state,
    wait_for_event,
    wait_service_state,
    wine,
    winpath,
)

NAME = "GracefulWineDay"


def graceful(*args: str, timeout: float = 120):
    return wine(WIN_PY, "-m", "graceful", *args, timeout=timeout)


def install(*args: str) -> subprocess.CompletedProcess[str]:
    graceful("service", "remove", "--stop", NAME)  # a leftover of an interrupted run
    result = graceful("service", "install", NAME, "--startup", "manual", *args)
    assert result.returncode == 0, result
    return result


@pytest.fixture
def removed(request, monkeypatch):
    """Each test its own service name: one that Wine leaves START_PENDING (2.) cannot be
    deleted while services.exe runs, and must not break the next test."""
    name = f"GracefulWineDay{request.node.name.split('_')[1]}"
    monkeypatch.setattr(sys.modules[__name__], "NAME", name)
    yield
    if graceful("service", "remove", "--stop", name, "--timeout", "30").returncode != 0:
        wine("sc", "delete", name)


def test_1a_rotation_with_a_second_handle(tmp_path):
    """1. The writer alone, under Windows file semantics."""
    result = wine(WIN_PY, winpath(ROOT / "tests/wine/rotate_held.py"), winpath(tmp_path))
    assert result.returncode == 0, result
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["held"] == ["x.log"], report
    assert report["rotate_failures"] == 1 and "Sharing violation" in report["error"], report
    assert report["viewer_reads"] >= 20  # the viewer saw the lines as they came
    assert "x.log.1" in report["released"], report
    assert report["numbers"] == list(range(40)) and report["dropped"] == 0, report


@pytest.fixture
def tiny_disk(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:  # lazily if a service that failed to stop still holds its log there
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def test_1b_service_with_a_full_log_disk(tmp_path, tiny_disk, removed):
    """1. The log folder fills up while the service runs."""
    log = tiny_disk / "svc.log"
    install("--log-file", winpath(log), "--app-dir", winpath(ROOT), "--",
            "tests.apps:basic", "--port", "0", "--loop", "winloop", "--access-log",
            "--checkpoint", winpath(tmp_path / "state.json"))
    assert graceful("service", "start", NAME).returncode == 0
    port = wait_for_event(log, "server.started")["port"]
    filler = tiny_disk / "filler"
    with pytest.raises(OSError), open(filler, "wb") as f:  # the disk is full from here on
        f.write(b"\0" * 1024 * 1024)
    for _ in range(5):  # past the page the log file already has
        assert [r[0::2] for r in Requests([f"http://127.0.0.1:{port}/fast"] * 20).wait()] == [
            (200, "fast\n")] * 20
    assert log.stat().st_size <= 4096  # what fitted in its first page, then nothing
    filler.unlink()  # room again: a line reports what was dropped (reopened within a second)
    deadline = time.monotonic() + 10
    while not any(e["event"] == "log.dropped" for e in read_events(log)) \
            and time.monotonic() < deadline:
        assert Requests([f"http://127.0.0.1:{port}/fast"]).wait()[0][0] == 200
        time.sleep(0.2)
    dropped = wait_for_event(log, "log.dropped")
    # Wine turns ENOSPC into EINVAL here; Windows says ERROR_DISK_FULL.
    assert dropped["dropped"] >= 1 and dropped["error"].startswith("OSError"), dropped
    torn = [e["line"] for e in read_events(log) if e["event"] == "raw"]
    assert len(torn) <= 1, torn  # the line the disk cut, ended; the next ones whole
    stopped = graceful("service", "stop", NAME)
    assert stopped.returncode == 0, stopped
    assert service_state(NAME) == "STOPPED"
    events = read_events(log)
    assert [e["code"] for e in events if e["event"] == "service.exit"] == [0]


def test_2_failure_before_logging(tmp_path, removed):
    """2."""
    app_dir = tmp_path / "app"
    shutil.copytree(ROOT / "tests", app_dir / "tests",
                    ignore=shutil.ignore_patterns("wine", "__pycache__"))
    log = tmp_path / "svc.log"
    install("--log-file", winpath(log), "--app-dir", winpath(app_dir), "--",
            "tests.apps:basic", "--port", "0")
    shutil.rmtree(app_dir)
    started = graceful("service", "start", NAME, "--timeout", "10")
    assert started.returncode == 1, started
    failed = wait_for_event(log, "service.failed")
    assert "--app-dir" in failed["error"], failed
    assert wait_for_event(log, "service.exit")["code"] == 2
    state = sc_query(NAME)
    print("sc query after the failure:", state)
    # No STOPPED of ours (nobody asked: the SCM's recovery must run), and not pywin32's own
    # STOPPED with 0x20000001 (536870913), which is what an exception in SvcRun gives.
    assert state.state == "START_PENDING", state  # Wine: see 2. above
    assert state.service_exit_code == 0, state


def test_3_settings_of_the_installing_shell(tmp_path, removed, monkeypatch):
    """3."""
    monkeypatch.setenv("GRACEFUL_DRAIN_TIMEOUT", "120")
    monkeypatch.setenv("GRACEFUL_PRE_STOP_DELAY", "3")
    log = tmp_path / "svc.log"
    installed = install("--log-file", winpath(log), "--app-dir", winpath(ROOT), "--",
                        "tests.apps:basic", "--port", "0", "--loop", "winloop")
    assert "stop budget 139s, preshutdown timeout 144000 ms" in installed.stdout, installed
    monkeypatch.delenv("GRACEFUL_DRAIN_TIMEOUT")
    monkeypatch.delenv("GRACEFUL_PRE_STOP_DELAY")
    status = graceful("service", "status", NAME)
    assert status.returncode == 0, status
    assert "drain_timeout=120.0 pre_stop_delay=3.0" in status.stdout, status
    assert "stop budget 139s" in status.stdout, status
    assert graceful("service", "start", NAME).returncode == 0
    wait_for_event(log, "server.started")
    assert wine("sc", "stop", NAME).returncode == 0
    hints = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = sc_query(NAME)
        if state.state == "STOPPED":
            break
        hints.append(state.wait_hint)
    assert hints and max(hints) > 100_000, hints  # from a 139 s budget, not the default 51 s
    stop = [e for e in read_events(log) if e["event"] == "stop.requested"]
    assert stop and stop[0]["source"] == "SCM_STOP"


def test_4_stop_and_remove_exit_codes(tmp_path, removed):
    """4."""
    log = tmp_path / "svc.log"
    install("--log-file", winpath(log), "--app-dir", winpath(ROOT), "--",
            "tests.apps:basic", "--port", "0", "--loop", "winloop", "--drain-timeout", "0.5",
            "--cancel-grace", "0.2")
    assert graceful("service", "start", NAME).returncode == 0
    port = wait_for_event(log, "server.started")["port"]
    refused = graceful("service", "remove", NAME)
    assert refused.returncode == 1, refused
    assert "is RUNNING: stop it first" in refused.stderr, refused
    assert service_state(NAME) == "RUNNING"
    slow = Requests([f"http://127.0.0.1:{port}/slow?s=30"])
    time.sleep(0.7)  # the request is in flight
    stopped = graceful("service", "stop", NAME)
    assert stopped.returncode == 3, stopped
    assert "exit_code=3" in stopped.stdout, stopped
    slow.wait(5)
    assert graceful("service", "start", NAME).returncode == 0
    removed_ = graceful("service", "remove", "--stop", NAME)
    assert removed_.returncode == 0, removed_
    assert removed_.stdout.strip().splitlines()[-1] == f"removed {NAME}"
    assert graceful("service", "status", NAME).returncode == 1  # gone, not marked for deletion
    again = install("--log-file", winpath(log), "--app-dir", winpath(ROOT), "--",
                    "tests.apps:basic", "--port", "0")  # not "marked for deletion" (1072)
    assert again.returncode == 0


def test_5_stop_during_start_pending(tmp_path, removed):
    """5."""
    log = tmp_path / "svc.log"
    install("--log-file", winpath(log), "--app-dir", winpath(ROOT), "--",
            "tests.apps:slow_startup", "--port", "0", "--loop", "winloop")
    started = graceful("service", "start", NAME, "--timeout", "3")
    assert started.returncode == 1 and "START_PENDING" in started.stdout, started
    deadline = time.monotonic() + 20  # the host reports once it runs (slow under load)
    while sc_query(NAME).checkpoint <= 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    seen = [sc_query(NAME)]
    time.sleep(1.5)
    seen.append(sc_query(NAME))
    assert [s.state for s in seen] == ["START_PENDING"] * 2, seen
    assert seen[1].checkpoint > seen[0].checkpoint, seen
    assert seen[1].wait_hint <= (60 + 2) * 1000, seen
    stopping = wine("sc", "stop", NAME)
    print("sc stop during START_PENDING:", stopping.stdout, stopping.stderr)
    assert stopping.returncode == 0, stopping
    assert wait_service_state(NAME, "STOPPED", 15) == "STOPPED", sc_query(NAME)
    assert wait_for_event(log, "start.abandoned")
    assert wait_for_event(log, "service.exit")["code"] == 0
