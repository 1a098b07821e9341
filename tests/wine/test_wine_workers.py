"""Under Wine: `graceful serve --workers 2` on Windows, a supervisor and two workers that
were handed the listening socket with socket.share (graceful/supervisor/windows_spawn.py).

a. Ctrl+C in the console (GenerateConsoleCtrlEvent to every process on it) reaches the
   supervisor only (the workers have no console); it tells both workers, which drain: the
   requests in flight on each are answered with Connection: close, exit 0.
b. A worker ended by TerminateProcess (taskkill /F, Task Manager) while clients keep coming
   is logged `worker.exited` and replaced; every request is answered meanwhile.
"""

from __future__ import annotations

import time

from tests.wine.conftest import Driver, Requests, read_events, wait_for_event


def serve_args(*extra: str) -> list[str]:
    return ["tests.wine.app:app", "--workers", "2", "--port", "0", "--log-format", "json",
            "--loop", "asyncio", "--drain-timeout", "20", *extra]


def events(log, name: str) -> list[dict]:
    return [e for e in read_events(log) if e.get("event") == name]


def in_flight_on_both(base: str) -> Requests:
    """Slow requests in flight on both workers: the first worker to accept is made busy
    (its loop blocked 1.5 s) so that the next connections are the other's to accept."""
    Requests([f"{base}/hog?s=1.5"])
    time.sleep(0.4)
    return Requests([f"{base}/pid?s=2.5"] * 8)


def test_a_ctrl_c_drains_both_workers(tmp_path, started):
    """a."""
    driver = Driver(started, tmp_path, "ctrl-c", *serve_args())
    ready = wait_for_event(driver.log, "supervisor.ready", timeout=90)
    assert len(ready["workers"]) == 2
    base = f"http://127.0.0.1:{driver.port()}"
    requests = in_flight_on_both(base)
    time.sleep(1.0)  # in flight
    driver.go()
    result = driver.result()
    assert result["sent"] == 1 and result["exit"] == 0, result
    answers = requests.wait()
    assert all(isinstance(a, tuple) and a[:2] == (200, "close") for a in answers), answers
    pids = {int(a[2].split()[1]) for a in answers}
    assert pids == set(ready["workers"]), (pids, ready)  # each worker drained some
    [stopping] = events(driver.log, "supervisor.stopping")
    assert stopping["source"] == "CTRL_C"
    told = [(e["pid"], e["source"]) for e in events(driver.log, "stop.requested")]
    assert sorted(told) == sorted((pid, "CTRL_C") for pid in ready["workers"]), told
    [end] = events(driver.log, "supervisor.exit")
    assert end["code"] == 0 and end["worker_codes"] == [0, 0]
