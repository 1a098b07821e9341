"""The Windows service's exit waits for the work the app left to threads (an app's last
writes handed to a thread, for the process the SCM starts), in a process of its own
(tests/service_child.py: SvcRun's body on its own thread, the Win32 calls faked).

1. A thread, a ThreadPoolExecutor job and a default-executor job started in on_cleanup all
   finish before the process ends; STOPPED with exit code 0; STOP_PENDING is reported while
   the exit waits, with a wait hint that covers the wait.
2. A thread that never ends holds the exit only until the end of the stop budget plus
   threads.RESERVE_S; it is logged by name and the service-specific exit code is 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graceful.bridge import win32 as w
from graceful.lifecycle import threads
from tests.conftest import ROOT
from tests.test_windows_harness import all_logged, free_port

SHORT_BUDGET = ["--drain-timeout", "0.5", "--cancel-grace", "0", "--hook-timeout", "0.5",
                "--checkpoint-timeout", "0.5"]
SHORT_BUDGET_S = 0.5 + 0 + 2 * 0.5 + 0.5


def run_service(tmp_path: Path, factory: str, *serve: str) -> tuple[list[w.ServiceStatus], int,
                                                                    float]:
    """Start the service, stop it once RUNNING; (the statuses reported, the process' exit
    code, seconds from the stop control to the process' end)."""
    argv = [sys.executable, "-m", "tests.service_child", "GracefulTest", "--log-file",
            str(tmp_path / "svc.log"), "--", f"tests.apps:{factory}", "--port",
            str(free_port()), "--loop", "asyncio", *serve]
    proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, "OUT_DIR": str(tmp_path)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    statuses: list[w.ServiceStatus] = []
    try:
        for line in proc.stdout:
            statuses.append(w.ServiceStatus(**json.loads(line)))
            if statuses[-1].state == w.SERVICE_RUNNING:
                break
        assert statuses and statuses[-1].state == w.SERVICE_RUNNING, statuses
        stop_sent = time.monotonic()
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        statuses += [w.ServiceStatus(**json.loads(line)) for line in proc.stdout]
        code = proc.wait(30)
        return statuses, code, time.monotonic() - stop_sent
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdin.close()
        proc.stdout.close()


def logged(tmp_path: Path, event: str) -> list[dict]:
    return all_logged(tmp_path / "svc.log", event)


@pytest.mark.parametrize(("factory", "written"), [("cleanup_thread", "thread.txt"),
                                                  ("cleanup_pool", "pool.txt"),
                                                  ("cleanup_default_executor", "executor.txt")])
def test_work_left_to_threads_is_finished_before_stopped(tmp_path, factory, written):
    """1."""
    statuses, code, took = run_service(tmp_path, factory)
    assert (tmp_path / written).read_text() == "written\n"
    # the exit ends when the work does, not at the end of the stop budget (47 s here); the
    # default executor's job is waited for by the runtime itself, before this wait
    waits = logged(tmp_path, "exit.waiting_threads")
    assert len(waits) == (factory != "cleanup_default_executor")
    assert all(took < wait["timeout_s"] / 2 for wait in waits)
    final = statuses[-1]
    assert (final.state, final.win32_exit_code, final.service_exit_code) == (
        w.SERVICE_STOPPED, 0, 0)
    assert code == 0
    assert not logged(tmp_path, "exit.abandoned_threads")
    assert logged(tmp_path, "service.exit")[0]["code"] == 0


def test_thread_that_never_ends_is_named_and_bounded(tmp_path):
    """2."""
    statuses, _, took = run_service(tmp_path, "endless_thread", *SHORT_BUDGET)
    final = statuses[-1]
    assert (final.state, final.service_exit_code) == (w.SERVICE_STOPPED, 3)
    assert took < SHORT_BUDGET_S + threads.RESERVE_S + 3.0
    assert logged(tmp_path, "exit.abandoned_threads")[0]["threads"] == ["metrics-exporter"]
    waiting = [s for s in statuses if s.state == w.SERVICE_STOP_PENDING][-1]
    assert waiting.wait_hint_ms >= threads.RESERVE_S * 1000
