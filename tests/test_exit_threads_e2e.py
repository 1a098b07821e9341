"""Work the application left to threads at the stop, end to end.

1. A non-daemon thread, a ThreadPoolExecutor job and a run_in_executor(None, ...) job
   started in on_cleanup all finish before the process exits 0, as under web.run_app.
2. A thread that never ends holds the exit only until the end of the stop budget plus
   threads.RESERVE_S; it is logged by name and the exit code is 3 (web.run_app waits forever).
3. graceful.run returns only once its loop's default executor has finished its jobs; an
   `async with Runtime` under asyncio.run leaves that to asyncio.run, which waits for them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from graceful.lifecycle import threads
from tests.conftest import ROOT, ServerProcess

CASES = [("cleanup_thread", "thread.txt"), ("cleanup_pool", "pool.txt"),
         ("cleanup_default_executor", "executor.txt")]

# --drain-timeout 0.5 --cancel-grace 0 --hook-timeout 0.5 --checkpoint-timeout 0.5
SHORT_BUDGET = ["--drain-timeout", "0.5", "--cancel-grace", "0", "--hook-timeout", "0.5",
                "--checkpoint-timeout", "0.5"]
SHORT_BUDGET_S = 0.5 + 0 + 2 * 0.5 + 0.5


def _run_app(factory: str, out_dir: os.PathLike[str]) -> subprocess.Popen[str]:
    """The same app under aiohttp's own web.run_app, started as its users start it."""
    code = ("import sys; from aiohttp import web; from tests import apps; "
            "web.run_app(getattr(apps, sys.argv[1])(), host='127.0.0.1', port=0)")
    proc = subprocess.Popen([sys.executable, "-u", "-c", code, factory], cwd=ROOT,
                            env={**os.environ, "OUT_DIR": str(out_dir)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # "======== Running on http://127.0.0.1:0 ========" once serving
        if "Running on" in line:
            return proc
    proc.kill()
    raise AssertionError(f"web.run_app did not start: {proc.wait(10)}")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize(("factory", "written"), CASES)
async def test_work_left_to_threads_in_cleanup_is_finished(serve, tmp_path, factory, written,
                                                           loop):
    """1."""
    server = serve(f"tests.apps:{factory}", "--loop", loop, env={"OUT_DIR": str(tmp_path)})
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    assert (tmp_path / written).read_text() == "written\n"
    assert "exit.abandoned_threads" not in server.names()


@pytest.mark.parametrize(("factory", "written"), CASES)
def test_run_app_finishes_the_same_work(tmp_path, factory, written):
    """1, the peer: web.run_app on the same app writes the same file and exits 0."""
    proc = _run_app(factory, tmp_path)
    try:
        proc.terminate()
        assert proc.wait(20) == 0
        assert (tmp_path / written).read_text() == "written\n"
    finally:
        proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.mark.parametrize(("factory", "name"), [("endless_thread", "metrics-exporter"),
                                              ("endless_executor_job", "asyncio_0")])
async def test_thread_that_never_ends_is_named_and_bounded(serve, factory, name):
    """2."""
    server = serve(f"tests.apps:{factory}", *SHORT_BUDGET)
    signalled = time.monotonic()
    server.signal()
    assert await asyncio.to_thread(server.wait, 30) == 3
    took = time.monotonic() - signalled
    assert SHORT_BUDGET_S < took < SHORT_BUDGET_S + threads.RESERVE_S + 2.0
    assert server.wait_for("exit.abandoned_threads")["threads"] == [name]
    names = server.names()
    assert names.index("hooks.done") < names.index("exit.abandoned_threads") < names.index(
        "process.exit")
    assert server.wait_for("process.exit")["code"] == 3


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_ctrl_c_ends_the_wait_for_threads(serve, signum):
    """2. The stop handlers stay until the process exits: a Ctrl+C (or SIGTERM) while the
    exit waits for threads ends that wait at once (exit 3, the threads named)."""
    server = serve("tests.apps:endless_thread")  # a stop budget of 47 s
    server.signal(signum)
    waiting = await asyncio.to_thread(server.wait_for, "exit.waiting_threads")
    assert waiting["threads"] == ["metrics-exporter"] and waiting["timeout_s"] > 40
    signalled = time.monotonic()
    server.signal(signum)
    assert await asyncio.to_thread(server.wait, 10) == 3
    assert time.monotonic() - signalled < 2.0
    assert server.wait_for("exit.abandoned_threads")["threads"] == ["metrics-exporter"]


def test_run_app_waits_forever_for_a_thread_that_never_ends(tmp_path):
    """2, the peer: web.run_app is still there long after the stop (killed by the test)."""
    proc = _run_app("endless_thread", tmp_path)
    try:
        proc.terminate()
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(SHORT_BUDGET_S + threads.RESERVE_S + 1.0)
    finally:
        proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_graceful_run_returns_once_the_default_executor_is_done(tmp_path):
    """3. The file written by a run_in_executor job from on_cleanup is there when
    graceful.run returns (printed by the script at that instant)."""
    script = ("import pathlib, sys, graceful; from tests import apps; "
              "code = graceful.run(apps.cleanup_default_executor, port=0, log_format='json'); "
              "print('written' if (pathlib.Path(sys.argv[1]) / 'executor.txt').exists() "
              "else 'missing', int(code), flush=True)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                            env={**os.environ, "OUT_DIR": str(tmp_path)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    server = ServerProcess.__new__(ServerProcess)
    try:
        ServerProcess._attach(server, proc)
        server.wait_for("server.started")
        server.signal()
        assert server.wait(20) == 0
        assert proc.stdout is not None and proc.stdout.read().split() == ["written", "0"]
    finally:
        server.kill()
        assert proc.stdout is not None
        proc.stdout.close()


def test_runtime_under_asyncio_run_leaves_the_executor_to_asyncio_run(tmp_path):
    """3. With `async with Runtime`, the loop is the caller's: asyncio.run shuts its
    default executor down, waiting for the job."""
    script = """
import asyncio, pathlib, sys
import graceful
from tests import apps

async def main():
    async with graceful.Runtime(apps.cleanup_default_executor, port=0) as runtime:
        runtime.stop("done")
        return await runtime.wait_stopped()

code = asyncio.run(main())
print('written' if (pathlib.Path(sys.argv[1]) / 'executor.txt').exists() else 'missing',
      int(code))
"""
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                          env={**os.environ, "OUT_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=30)
    assert done.stdout.splitlines()[-1].split() == ["written", "0"], done.stderr
