"""Under Wine, the service's controls as an operator uses them, `graceful service ...` typed
as a user types it, against the real service host and Wine's SCM:

1. a CONTINUE whose resume fails (another process took the port while paused): the service
   is PAUSED again (not CONTINUE_PENDING for ever), `service continue` exits 1 saying so,
   and a later continue, once the port is free, serves again in the same process;
2. a second `service stop`, a `restart` and a `remove --stop` sent while a stop is under
   way (STOP_PENDING: the SCM answers a second STOP with 1061) wait for that stop, then do
   what was asked, and exit with what happened;
3. `install -- app --config FILE`: the service reads FILE at each start (an edit applies at
   the next start, no reinstall), and `install` and `status` name the file;
4. the rotation made by the service's last log line is compressed before the process ends,
   and a rotated file left uncompressed (by an older version, a kill) is compressed at the
   next start;
5. `service continue` while the pause still drains (PAUSE_PENDING) ends the pause.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import time

import pytest

from tests.wine.conftest import (
    ROOT,
    WIN_PY,
    Requests,
    http_text,
    read_events,
    service_state,
    wait_for_event,
    wait_service_state,
    wine,
    winpath,
)

NAME = "GracefulWineCtl"
LOG_MAX_BYTES = 10 * 1024 * 1024  # graceful.windows.service_log's


def graceful(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return wine(WIN_PY, "-m", "graceful", *args, timeout=timeout)


def in_background(started, *args: str) -> subprocess.Popen[bytes]:
    """`graceful ARGS` left running; the `started` fixture ends it by its pid if need be."""
    return started(["wine", WIN_PY, "-m", "graceful", *args],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE).proc


def state() -> str:
    return service_state(NAME)


def wait_state(want: str, timeout: float = 30) -> str:
    return wait_service_state(NAME, want, timeout, poll=0.2)


def get(port: int, path: str, timeout: float = 10) -> str:
    return http_text(port, path, timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def install(*args: str) -> subprocess.CompletedProcess[str]:
    graceful("service", "remove", "--stop", NAME, "--timeout", "30")  # a leftover, if any
    result = graceful("service", "install", NAME, "--startup", "manual", *args)
    assert result.returncode == 0, result
    return result


@pytest.fixture(autouse=True)
def removed(request, monkeypatch):
    name = f"GracefulWineCtl{request.node.name.split('_')[1]}"
    monkeypatch.setattr(sys.modules[__name__], "NAME", name)
    yield
    if graceful("service", "remove", "--stop", name, "--timeout", "30").returncode != 0:
        wine("sc", "delete", name)


def finished(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str]:
    """The exit code and output of a command run in the background; ended by its pid if it
    overruns."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, (out + err).decode(errors="replace").replace("\r", "")


def test_1_continue_after_a_failed_resume(tmp_path):
    """1."""
    log = tmp_path / "svc.log"
    port = free_port()
    install("--log-file", winpath(log), "--app-dir", winpath(ROOT), "--",
            "tests.apps:basic", "--port", str(port), "--loop", "asyncio")
    assert graceful("service", "start", NAME).returncode == 0
    wait_for_event(log, "server.started")
    assert get(port, "/count") == "1\n"
    assert graceful("service", "pause", NAME).returncode == 0
    squatter = socket.socket()  # Windows closes the listener at a pause: take its port
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past /count's TIME_WAIT
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        refused = graceful("service", "continue", NAME, "--timeout", "20")
        assert refused.returncode == 1, refused
        assert "PAUSED" in refused.stdout + refused.stderr, refused
        assert "resume.failed" in refused.stderr, refused
        assert state() == "PAUSED"
        wait_for_event(log, "resume.failed")
    finally:
        squatter.close()
    continued = graceful("service", "continue", NAME, "--timeout", "20")
    assert continued.returncode == 0 and "RUNNING" in continued.stdout, continued
    assert get(port, "/count") == "2\n"  # the same process, its state kept
    stopped = graceful("service", "stop", NAME)
    assert stopped.returncode == 0, stopped
    events = read_events(log)
    assert [e["event"] for e in events if e["event"] in ("resume.failed", "resume.done")] == [
        "resume.failed", "resume.done"]


def _slow_request_and_a_stop(port: int, stop: list[str]) -> Requests:
    """A slow request in flight, and a stop (`stop`, run to its end) that drains it."""
    slow = Requests([f"http://127.0.0.1:{port}/slow?s=10"])
    time.sleep(0.7)
    assert "STOP_PENDING" in wine(*stop).stdout
    assert state() == "STOP_PENDING"
    return slow


def _started(log, count: int, timeout: float = 60) -> int:
    """The port of the service's start number `count` (1 the first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ports = [e["port"] for e in read_events(log) if e["event"] == "server.started"]
        if len(ports) >= count:
            return ports[count - 1]
        time.sleep(0.2)
    raise AssertionError(f"no start {count} in {log}")


@pytest.mark.timeout(300)
def test_2_controls_during_a_stop(tmp_path, started):
    """2."""
    log = tmp_path / "svc.log"
    install("--log-file", winpath(log), "--app-dir", winpath(ROOT), "--",
            "tests.apps:basic", "--port", "0", "--loop", "asyncio", "--drain-timeout", "30")
    assert graceful("service", "start", NAME).returncode == 0
    port = _started(log, 1)
    slow = Requests([f"http://127.0.0.1:{port}/slow?s=12"])
    time.sleep(0.7)
    first = in_background(started, "service", "stop", NAME)  # an operator's stop, waiting
    assert wait_state("STOP_PENDING") == "STOP_PENDING"
    second = graceful("service", "stop", NAME)  # another operator's
    assert second.returncode == 0, second
    assert "already under way" in second.stdout, second
    assert second.stdout.strip().splitlines()[-1] == f"{NAME}: STOPPED", second
    code, output = finished(first)
    assert code == 0, output
    assert [r[0::2] for r in slow.wait()] == [(200, "slept 12.0\n")]

    assert graceful("service", "start", NAME).returncode == 0
    slow = _slow_request_and_a_stop(_started(log, 2), ["sc", "stop", NAME])
    restarted = graceful("service", "restart", NAME)
    assert restarted.returncode == 0, restarted
    assert "already under way" in restarted.stdout, restarted
    assert restarted.stdout.strip().splitlines()[-1].startswith(f"{NAME}: RUNNING"), restarted
    assert state() == "RUNNING"
    assert [r[0::2] for r in slow.wait()] == [(200, "slept 10.0\n")]

    slow = _slow_request_and_a_stop(_started(log, 3), ["sc", "stop", NAME])
    removed = graceful("service", "remove", "--stop", NAME)
    assert removed.returncode == 0, removed
    assert removed.stdout.strip().splitlines()[-1] == f"removed {NAME}", removed
    assert [r[0::2] for r in slow.wait()] == [(200, "slept 10.0\n")]
    assert [e["code"] for e in read_events(log) if e["event"] == "service.exit"] == [0, 0, 0]


def test_3_config_file_read_at_each_start(tmp_path):
    """3."""
    log = tmp_path / "svc.log"
    config = tmp_path / "svc.toml"
    config.write_text("drain-timeout = 0.5\ncancel-grace = 0.2\n")
    installed = install("--log-file", winpath(log), "--app-dir", winpath(ROOT), "--",
                        "tests.apps:basic", "--port", "0", "--loop", "asyncio",
                        "--config", winpath(config))
    assert winpath(config) in installed.stdout and "each start" in installed.stdout, installed
    assert "--drain-timeout" not in installed.stdout, installed  # not copied from the file
    config.write_text("drain-timeout = 30\ncancel-grace = 0.2\n")  # edited after the install
    status = graceful("service", "status", NAME)
    assert status.returncode == 0, status
    assert f"config {winpath(config)}" in status.stdout, status
    assert "drain_timeout=30.0" in status.stdout, status
    assert graceful("service", "start", NAME).returncode == 0
    port = wait_for_event(log, "server.started")["port"]
    slow = Requests([f"http://127.0.0.1:{port}/slow?s=3"])
    time.sleep(0.7)
    stopped = graceful("service", "stop", NAME)
    assert stopped.returncode == 0, stopped  # drained with the file's 30 s, not cut at 0.5 s
    assert slow.wait() == [(200, "close", "slept 3.0\n")]


def _filler(size: int) -> bytes:
    line = json.dumps({"event": "filler", "level": "info", "pad": "x" * 200}) + "\n"
    count, rest = divmod(size, len(line))
    return (line * count).encode() + b" " * max(rest - 1, 0) + (b"\n" if rest else b"")


def _start_and_stop(log) -> None:
    assert graceful("service", "start", NAME).returncode == 0
    wait_for_event(log, "server.started")
    stopped = graceful("service", "stop", NAME)
    assert stopped.returncode == 0, stopped


def test_4_rotation_by_the_last_line_is_compressed(tmp_path):
    """4."""
    log = tmp_path / "svc.log"
    leftover = tmp_path / "svc.log.1"
    leftover.write_text('{"event": "left.uncompressed"}\n')
    install("--log-file", winpath(log), "--app-dir", winpath(ROOT), "--",
            "tests.apps:basic", "--port", str(free_port()), "--loop", "asyncio")
    _start_and_stop(log)  # how many bytes a start and stop log
    assert not leftover.exists(), sorted(p.name for p in tmp_path.iterdir())
    with gzip.open(tmp_path / "svc.log.1.gz", "rt") as packed:
        assert packed.read() == '{"event": "left.uncompressed"}\n'
    lines = log.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[-1])["event"] == "service.exit"
    before, last = sum(map(len, lines[:-1])), len(lines[-1])
    # The next run starts with a file so full that its last line (service.exit) rotates it.
    log.write_bytes(_filler(LOG_MAX_BYTES - before - last // 2))
    _start_and_stop(log)
    names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("svc.log"))
    assert names == ["svc.log", "svc.log.1.gz", "svc.log.2.gz"], names
    assert log.read_bytes() == b""  # the rotation came with the very last line
    with gzip.open(tmp_path / "svc.log.1.gz", "rb") as packed:
        lines = packed.read().splitlines()
    assert json.loads(lines[-1])["event"] == "service.exit"


def test_5_continue_during_pause_pending(tmp_path):
    """5."""
    log = tmp_path / "svc.log"
    install("--log-file", winpath(log), "--app-dir", winpath(ROOT), "--",
            "tests.apps:basic", "--port", "0", "--loop", "asyncio", "--drain-timeout", "30")
    assert graceful("service", "start", NAME).returncode == 0
    port = wait_for_event(log, "server.started")["port"]
    slow = Requests([f"http://127.0.0.1:{port}/slow?s=15"])
    time.sleep(0.7)
    pausing = graceful("service", "pause", NAME, "--timeout", "1")
    assert pausing.returncode == 1 and "PAUSE_PENDING" in pausing.stdout, pausing
    assert state() == "PAUSE_PENDING"
    continued = graceful("service", "continue", NAME, "--timeout", "20")
    assert continued.returncode == 0, continued
    assert continued.stdout.strip().splitlines()[-1].startswith(f"{NAME}: RUNNING"), continued
    assert get(port, "/count") == "1\n"
    assert [r[0::2] for r in slow.wait()] == [(200, "slept 15.0\n")]
    assert graceful("service", "stop", NAME).returncode == 0
