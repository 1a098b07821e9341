"""Under Wine: a service with --workers 2 (graceful/windows/service_workers.py).

1. `graceful service reload` while clients keep coming, on new connections and on
   keep-alive ones: none refused, lost or reset; new workers serve, the service's process
   is the same. The same reload asked for as any other SCM client would (control 129 through
   advapi32's ControlService from another Windows process: tests/wine/scm_control.py):
   new workers serve, the service's process is the one the SCM knows. Another user control
   (200) is answered ERROR_CALL_NOT_IMPLEMENTED, logged, and the service serves on (its
   process the same). A
   reload whose new workers fail at their start exits 1 with the reason and the old
   workers serve on.
2. `sc stop` during a reload, requests in flight: they are answered, the reload's new
   workers are ended, `service reload` exits 1 (the service is stopping), STOP_PENDING's
   checkpoint rises while the two workers drain, and the service reaches STOPPED with 0.
3. PAUSE with requests in flight: PAUSE_PENDING while the workers drain their pause, PAUSED
   only once every worker has paused (`pause.done` from each); CONTINUE: RUNNING once every
   worker accepts again, and it serves.
4. `service install -- ... --workers 2 --checkpoint FILE` is refused at install, as `serve`
   refuses it: exit 2, one line, and no service is installed.
5. A service whose workers print raw lines: its log stays JSON lines (`worker.output`). A
   `service reload` queued behind a running one reports its own restart's outcome: the code
   on disk at its request fails to start, so it exits 1 naming the error, while the first
   one exits 0. A `--config` file that no longer reads: the reload exits 1 with the reason,
   and the service serves on.
6. A bad MODULE: the first start fails, the service's exit code is 2 (not a worker's crash
   at the interpreter's teardown), the import error's line is in the log, as JSON.
"""

from __future__ import annotations

import json
import subprocess
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
    wine,
    winpath,
)
from tests.wine.test_wine_workers import KeepAlive, Load

NAME = "GracefulWineWorkers"


def graceful(*args: str, timeout: float = 180):
    return wine(WIN_PY, "-m", "graceful", *args, timeout=timeout)


def scm_control(code: int) -> dict:
    """Control `code` sent to the service by another Windows process, through advapi32."""
    sent = wine(WIN_PY, winpath(ROOT / "tests/wine/scm_control.py"), NAME, str(code))
    assert sent.returncode == 0, sent
    return json.loads(sent.stdout.strip().splitlines()[-1])


@pytest.fixture
def service(tmp_path):
    graceful("service", "remove", "--stop", NAME, "--timeout", "30")  # a leftover, if any
    yield
    if graceful("service", "remove", "--stop", NAME, "--timeout", "60").returncode != 0:
        wine("sc", "delete", NAME)


# three reloads (each 10 to 30 s under Wine on a loaded machine), a start and a stop
@pytest.mark.timeout(300)
def test_reload_and_stop_with_two_workers(tmp_path, service):
    log, refuse = tmp_path / "svc.log", tmp_path / "refuse"
    installed = graceful(
        "service", "install", NAME, "--startup", "manual", "--log-file", winpath(log),
        "--app-dir", winpath(ROOT), "--env", f"WINE_TEST_REFUSE_START={winpath(refuse)}",
        "--", "tests.wine.app:app", "--workers", "2", "--port", "0", "--loop", "asyncio",
        "--drain-timeout", "20", "--restart-timeout", "60")
    assert installed.returncode == 0, installed
    assert wine("net", "start", NAME).returncode == 0
    ready = wait_for_event(log, "supervisor.ready", timeout=120)
    port = wait_for_event(log, "server.started")["port"]
    assert service_state(NAME) == "RUNNING"

    # 1. a reload under load
    load, keep = Load(f"http://127.0.0.1:{port}/pid?s=0.02"), KeepAlive(port)
    time.sleep(1.0)
    reloaded = graceful("service", "reload", NAME)
    time.sleep(1.0)
    load_answers = load.stop()
    keep.stop()
    assert reloaded.returncode == 0, reloaded
    done = wait_for_event(log, "restart.done")
    assert done["replaced"] == ready["workers"] and len(done["workers"]) == 2
    assert done["pid"] == ready["pid"]  # the service's process is the same
    failed = [said for _, said in load_answers if not said.startswith("pid")]
    assert failed == [] and keep.errors == [], (failed, keep.errors)
    served_by = {said for _, said in load_answers}
    assert {f"pid {p}" for p in done["workers"]} & served_by, served_by  # the new ones serve
    print(f"reload: {len(load_answers)} new-connection and {keep.served} keep-alive "
          f"requests ({keep.reopened} reopened on Connection: close), 0 failed; "
          f"{reloaded.stdout.strip()}")

    # the same control from another SCM client: a reload
    offset = len(read_events(log))
    sent = scm_control(129)
    assert sent["error"] == 0 and sent["pid"] == ready["pid"], sent
    assert wait_for_event(log, "restart.requested", after=offset)["source"] == "SCM_RELOAD"
    raw = wait_for_event(log, "restart.done", after=offset)
    assert raw["replaced"] == done["workers"] and len(raw["workers"]) == 2, raw
    assert raw["pid"] == ready["pid"]
    [(status, _, body)] = Requests([f"http://127.0.0.1:{port}/pid"]).wait()
    assert status == 200 and int(body.split()[1]) in raw["workers"], body
    # a user control the service does not handle: ignored, logged, the service serves on
    offset = len(read_events(log))
    ignored = scm_control(200)
    # the handler answers ERROR_CALL_NOT_IMPLEMENTED (120); Wine's SCM tells the sender 0
    assert ignored["error"] in (0, 120), ignored
    assert ignored["pid"] == ready["pid"]  # the SCM's process id after the raw reload
    assert wait_for_event(log, "service.control_ignored", after=offset)["code"] == 200
    assert service_state(NAME) == "RUNNING"
    [(status, _, body)] = Requests([f"http://127.0.0.1:{port}/pid"]).wait()
    assert status == 200 and int(body.split()[1]) in raw["workers"], body

    # a reload whose new workers fail: the old ones serve on
    refuse.write_text("x")
    refused = graceful("service", "reload", NAME)
    refuse.unlink()
    assert refused.returncode == 1, refused
    assert "reload failed: exited before it was ready" in refused.stderr, refused
    [(status, _, body)] = Requests([f"http://127.0.0.1:{port}/pid"]).wait()
    assert status == 200 and int(body.split()[1]) in raw["workers"]

    # 2. sc stop during a reload (sent as any SCM client would), requests in flight
    requests = Requests([f"http://127.0.0.1:{port}/pid?s=3"] * 4)
    time.sleep(0.8)
    reloading = subprocess.Popen(["wine", WIN_PY, "-m", "graceful", "service", "reload", NAME],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    try:
        wait_for_event(log, "worker.started", generation=4)  # the fourth reload's first worker
        assert "STOP_PENDING" in wine("sc", "stop", NAME).stdout
        _, said = reloading.communicate(timeout=90)
    finally:
        if reloading.poll() is None:
            reloading.kill()
    assert reloading.returncode == 1 and "the service is stopping" in said, said
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen.append(sc_query(NAME))
        if seen[-1].state == "STOPPED":
            break
    assert seen[-1].state == "STOPPED", seen
    checkpoints = [s.checkpoint for s in seen if s.state == "STOP_PENDING"]
    assert checkpoints == sorted(checkpoints) and len(set(checkpoints)) >= 2, seen
    answers = requests.wait()
    assert all(isinstance(a, tuple) and a[:2] == (200, "close") for a in answers), answers
    events = read_events(log)
    assert [e for e in events if e.get("event") == "restart.abandoned"], "no abandoned reload"
    [end] = [e for e in events if e.get("event") == "supervisor.exit"]
    assert end["code"] == 0 and end["worker_codes"] == [0, 0], end
    assert [e["code"] for e in events if e.get("event") == "service.exit"] == [0]


def test_pause_waits_for_every_worker(tmp_path, service, started):
    """3."""
    log = tmp_path / "svc.log"
    installed = graceful(
        "service", "install", NAME, "--startup", "manual", "--log-file", winpath(log),
        "--app-dir", winpath(ROOT), "--", "tests.wine.app:app", "--workers", "2",
        "--port", "0", "--loop", "asyncio", "--drain-timeout", "20")
    assert installed.returncode == 0, installed
    assert wine("net", "start", NAME).returncode == 0
    ready = wait_for_event(log, "supervisor.ready", timeout=120)
    port = wait_for_event(log, "server.started")["port"]
    requests = Requests([f"http://127.0.0.1:{port}/pid?s=5"] * 2)
    time.sleep(1.0)  # in flight
    pausing = started(["wine", WIN_PY, "-m", "graceful", "service", "pause", NAME],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE).proc
    wait_for_event(log, "pause.requested", timeout=30)
    seen = [service_state(NAME) for _ in range(4)]  # the drain has seconds to go
    answers = requests.wait()
    assert all(isinstance(a, tuple) and a[:2] == (200, "close") for a in answers), answers
    out, err = pausing.communicate(timeout=60)
    assert pausing.returncode == 0 and b"PAUSED" in out, (out, err)
    assert seen == ["PAUSE_PENDING"] * 4, seen
    events = read_events(log)
    done = [e["pid"] for e in events if e.get("event") == "pause.done"]
    assert sorted(done) == sorted(ready["workers"]), events
    assert service_state(NAME) == "PAUSED"
    continued = graceful("service", "continue", NAME)
    assert continued.returncode == 0 and "RUNNING" in continued.stdout, continued
    assert len([e for e in read_events(log) if e.get("event") == "resume.done"]) == 2
    [(status, _, _)] = Requests([f"http://127.0.0.1:{port}/pid"]).wait()
    assert status == 200
    # the service's workers too run in Job objects of their own (graceful/supervisor/windows_job.py)
    assert not [e for e in read_events(log) if e.get("event") == "worker.no_job"]


def test_install_refuses_workers_with_a_checkpoint(tmp_path, service):
    """4."""
    refused = graceful(
        "service", "install", NAME, "--startup", "manual", "--app-dir", winpath(ROOT),
        "--", "tests.apps:basic", "--workers", "2", "--port", "0",
        "--checkpoint", winpath(tmp_path / "state.json"))
    assert refused.returncode == 2, refused
    assert refused.stderr.splitlines() == [
        f"graceful service: error: cannot install {NAME}: --workers above 1 with "
        "--checkpoint: a checkpoint has one writer, so it is served by one worker (keep "
        "state shared by several workers in a database or a cache)"], refused
    status = graceful("service", "status", NAME)
    assert status.returncode == 1 and "(Win32 error 1060)" in status.stderr, status  # none


def _raw_lines_built(log) -> int:
    return log.read_text(encoding="utf-8", errors="replace").count("app built")


# two reloads (the first with 2 slow starts), a failing one and a start: about 90 s
@pytest.mark.timeout(300)
def test_queued_reload_reports_its_own_outcome(tmp_path, service):
    """5."""
    log, refuse, slow = tmp_path / "svc.log", tmp_path / "refuse", tmp_path / "slow"
    config = tmp_path / "graceful.toml"
    good = 'workers = 2\nport = 0\nloop = "asyncio"\ndrain-timeout = 20\n'
    config.write_text(good)
    installed = graceful(
        "service", "install", NAME, "--startup", "manual", "--log-file", winpath(log),
        "--app-dir", winpath(ROOT), "--env", f"WINE_TEST_REFUSE_START={winpath(refuse)}",
        "--env", f"WINE_TEST_SLOW_START={winpath(slow)}",
        "--", "tests.wine.app:raw_output", "--config", winpath(config))
    assert installed.returncode == 0, installed
    assert wine("net", "start", NAME).returncode == 0
    ready = wait_for_event(log, "supervisor.ready", timeout=120)
    port = wait_for_event(log, "server.started")["port"]

    # the app's raw lines: wrapped, every line of the log is JSON
    wrapped = wait_for_event(log, "worker.output", stream="stderr")
    assert wrapped["line"] == "a raw line on stderr" and wrapped["level"] == "warning"
    assert wrapped["worker_pid"] in ready["workers"], (wrapped, ready)
    assert wait_for_event(log, "worker.output", line="app built")["stream"] == "stdout"
    assert [e for e in read_events(log) if e["event"] == "raw"] == []

    # reload A runs (each new worker's start takes 3 s); B is asked for meanwhile, once A's
    # new workers have built the app, with code on disk that fails: B's restart fails
    slow.write_text("3")
    first = subprocess.Popen(["wine", WIN_PY, "-m", "graceful", "service", "reload", NAME],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while _raw_lines_built(log) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        refuse.write_text("x")
        second = graceful("service", "reload", NAME)
        said, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    slow.unlink()
    refuse.unlink()
    requested = [e for e in read_events(log) if e["event"] == "restart.requested"]
    assert [e["queued_behind"] for e in requested] == [0, 1], requested
    assert first.returncode == 0 and "reloaded" in said, (first.returncode, said)
    assert second.returncode == 1, second
    assert "reload failed" in second.stderr and "refused to start" in second.stderr, second
    [done] = [e for e in read_events(log) if e["event"] == "restart.done"]
    [(status, _, body)] = Requests([f"http://127.0.0.1:{port}/pid"]).wait()
    assert status == 200 and int(body.split()[1]) in done["workers"], body

    # a config file that no longer reads: a failed reload, the service serves on
    config.write_text(good + 'drain-timeout = "oops\n')
    broken = graceful("service", "reload", NAME)
    config.write_text(good)
    assert broken.returncode == 1, broken
    assert "reload failed" in broken.stderr and "not a graceful service" not in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1, broken
    [(status, _, body)] = Requests([f"http://127.0.0.1:{port}/pid"]).wait()
    assert status == 200 and int(body.split()[1]) in done["workers"], body
    assert [e for e in read_events(log) if e["event"] == "raw"] == []


@pytest.mark.timeout(180)
def test_a_bad_module_fails_the_first_start_with_2(tmp_path, service):
    """6."""
    log = tmp_path / "svc.log"
    (tmp_path / "badmod.py").write_text(  # good at install, bad at the start
        "import os\nfrom aiohttp import web\n"
        "if os.path.exists(os.path.join(os.path.dirname(__file__), 'broken')):\n"
        "    raise RuntimeError('no such thing here')\napp = web.Application\n")
    installed = graceful(
        "service", "install", NAME, "--startup", "manual", "--log-file", winpath(log),
        "--app-dir", winpath(tmp_path), "--", "badmod:app", "--workers", "2", "--port", "0")
    assert installed.returncode == 0, installed
    (tmp_path / "broken").write_text("x")
    wine("net", "start", NAME)
    assert wait_for_event(log, "service.exit", timeout=120)["code"] == 2
    text = log.read_text(encoding="utf-8", errors="replace")
    assert "importing 'badmod' failed: RuntimeError: no such thing here" in text
    assert "Fatal Python error" not in text
    assert [e for e in read_events(log) if e["event"] == "raw"] == []
