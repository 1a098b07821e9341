"""graceful.lifecycle.threads: the one adapter over CPython's private exit hooks.

1. CPython still keeps them where graceful.lifecycle.threads looks: concurrent.futures' exit hook in
   threading._threading_atexits, atexit._run_exitfuncs. Fails loudly when they move.
2. Where they are missing, the CLI leaves through the interpreter's own exit, which still
   waits for the work left to threads.
3. join_all runs the executor exit hooks and joins non-daemon threads, until the deadline.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread
import os
import subprocess
import sys
import threading

from graceful.lifecycle import threads
from tests.conftest import ROOT, ServerProcess


def test_cpython_keeps_the_exit_hooks_where_we_look():
    """1."""
    assert threads.supported()
    assert concurrent.futures.thread._python_exit in [
        getattr(hook, "func", hook) for hook in threading._threading_atexits]
    assert callable(atexit._run_exitfuncs)


def test_without_the_hooks_the_cli_takes_the_interpreters_exit(tmp_path):
    """2."""
    script = ("import sys; from graceful.lifecycle import threads; "
              "threads.supported = lambda: False; "
              "from graceful.cli.main import main; main(sys.argv[1:])")
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "serve", "tests.apps:cleanup_pool", "--port", "0",
         "--log-format", "json"], cwd=ROOT, env={**os.environ, "OUT_DIR": str(tmp_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    server = ServerProcess.__new__(ServerProcess)
    try:
        ServerProcess._attach(server, proc)
        server.wait_for("server.started")
        server.signal()
        assert server.wait(20) == 0
        assert (tmp_path / "pool.txt").read_text() == "written\n"
    finally:
        server.kill()


def test_join_all_waits_for_pools_and_threads_until_the_deadline():
    """3. In a process of its own: afterwards no executor takes a job."""
    script = """
import concurrent.futures, threading, time
from graceful.lifecycle import threads

done = []
pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
for index in range(3):
    pool.submit(lambda index=index: (time.sleep(0.1), done.append(f"job{index}")))
threading.Thread(target=lambda: (time.sleep(0.2), done.append("thread"))).start()
threading.Thread(target=threading.Event().wait, name="stuck").start()
threading.Thread(target=threading.Event().wait, name="daemon", daemon=True).start()
started = time.monotonic()
abandoned = threads.join_all(started + 1.0)
took = time.monotonic() - started
print(sorted(done), abandoned, 0.9 < took < 1.5, flush=True)
import os; os._exit(0)
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.stdout.splitlines()[-1] == "['job0', 'job1', 'job2', 'thread'] ['stuck'] True", (
        done.stderr)
