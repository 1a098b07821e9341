"""Under Wine: graceful serve in a console, stopped by console events, drains Linux clients.

a. Ctrl+C (GenerateConsoleCtrlEvent to the console, the processes in a pseudo-terminal) on
   winloop and on the Proactor loop: requests in flight complete with Connection: close,
   the checkpoint is written, exit 0.
c. CTRL_BREAK raised inside the process (signal.raise_signal from another thread, while the
   loop sleeps) starts the same drain.
d. CTRL_CLOSE, delivered the way Windows delivers it (a thread at kernelbase!CtrlRoutine in
   the process): our SetConsoleCtrlHandler handler starts the drain and blocks until the
   stop has finished.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from graceful import checkpoint as ckpt
from tests.wine.conftest import WIN_PY, Driver, Requests, read_events, wait_for_event, winpath


def serve_args(work, loop: str, *extra: str) -> list[str]:
    return ["tests.apps:basic", "--port", "0", "--log-format", "json", "--loop", loop,
            "--checkpoint", winpath(work / "state.json"), "--drain-timeout", "20", *extra]


def sources(log) -> list[str]:
    return [e["source"] for e in read_events(log) if e.get("event") == "stop.requested"]


@pytest.mark.parametrize("loop", ["winloop", "asyncio"])
def test_a_ctrl_c_drains(tmp_path, started, loop):
    """a."""
    driver = Driver(started, tmp_path, "ctrl-c", *serve_args(tmp_path, loop))
    base = f"http://127.0.0.1:{driver.port()}"
    expected = {"winloop": "winloop", "asyncio": "asyncio.windows_events"}[loop]  # Proactor
    assert wait_for_event(driver.log, "server.started")["loop"] == expected
    requests = Requests([f"{base}/slow?s=2"] * 3)
    time.sleep(0.7)  # in flight
    driver.go()
    result = driver.result()
    assert result["sent"] == 1 and result["exit"] == 0, result
    assert requests.wait() == [(200, "close", "slept 2.0\n")] * 3
    assert sources(driver.log) == ["CTRL_C"]
    assert ckpt.read(tmp_path / "state.json").state == {"served": 3}
    print(f"{loop}: Ctrl+C to exit {result['stop_took_s']}s")


def test_c_ctrl_break_raised_in_process(tmp_path, started):
    """c."""
    proc = started(["wine", WIN_PY, "-m", "graceful", "serve", "tests.wine.app:app",
                    *serve_args(tmp_path, "winloop")[1:]],
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "log.jsonl"

    def relay() -> None:
        with open(log, "a") as out:
            for line in proc.proc.stderr:
                out.write(line)
                out.flush()

    import threading

    threading.Thread(target=relay, daemon=True).start()
    base = f"http://127.0.0.1:{wait_for_event(log, 'server.started')['port']}"
    requests = Requests([f"{base}/slow?s=2"] * 2)
    time.sleep(0.7)
    [(status, _, body)] = Requests([f"{base}/raise-break"]).wait()
    assert (status, body) == (200, "raising SIGBREAK\n")
    assert proc.proc.wait(60) == 0
    assert requests.wait() == [(200, "close", "slept 2.0\n")] * 2
    assert sources(log) == ["CTRL_BREAK"]
    assert ckpt.read(tmp_path / "state.json").state == {"served": 2}


def test_d_ctrl_close_through_the_console_handler(tmp_path, started):
    """d."""
    driver = Driver(started, tmp_path, "close", *serve_args(tmp_path, "winloop"))
    base = f"http://127.0.0.1:{driver.port()}"
    requests = Requests([f"{base}/slow?s=2"] * 2)
    time.sleep(0.7)
    driver.go()
    result = driver.result()
    assert result["sent"] and result["handler_returned"] == 1, result
    assert requests.wait() == [(200, "close", "slept 2.0\n")] * 2
    assert sources(driver.log) == ["CTRL_CLOSE"]
    # The handler returned only once the stop was over (the requests had ~1.3 s to go).
    assert result["handler_blocked_s"] >= 1.0, result
    assert result["exit"] == 0
    assert ckpt.read(tmp_path / "state.json").state == {"served": 2}
