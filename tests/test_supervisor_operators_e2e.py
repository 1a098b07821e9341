"""The supervisor as an operator's day found it (a fresh-context review that tried to break
it): a stop while a dead worker's replacement starts, a failed restart just after a worker
died, a failed restart's binds, an old worker whose stop failed, restarts asked for in a
burst, a stop repeated during a restart's hand-over, SIGHUP in the first moment of the
process. Real CLI, real signals, real sockets, bounded waits.

Every process a test starts is ended by its pid: the supervisor by the `serve` fixture, the
workers it logged by the plugin's kill.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from graceful.host.processes import alive
from tests.conftest import ROOT
from tests.loadgen import ended, get
from tests.test_restart_scenarios_e2e import started, stops_with_0, worker_pids
from tests.test_supervisor_e2e import restart

TARGET = "tests.deployed:create_app"


async def replaced(server: Any, timeout: float = 30.0) -> int:
    """The pid of the next worker that said ready as a dead one's replacement."""
    return (await server.event("worker.ready", timeout, replaced=True))["worker_pid"]


async def test_a_stop_while_a_dead_workers_replacement_starts_exits_0(serve, release):
    """1. A worker OOM-killed; while its replacement is still starting (a slow on_startup),
    the service is stopped: the replacement is ended, `supervisor.exit` says 0 and so does
    the process (the supervisor crashed with a CancelledError, exit 1)."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    (first,) = worker_pids(server)
    release.write_text("slow\n")  # its replacement's on_startup takes a second
    os.kill(first, signal.SIGKILL)
    await started(server, 0)  # the first workers start before the log: the replacement
    await asyncio.sleep(0.3)
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 30) == 0
    assert server.wait_for("supervisor.exit", 1)["code"] == 0
    assert "Traceback" not in "".join(server.raw)


async def test_a_failed_restart_just_after_a_worker_died_leaves_its_slot_served(serve,
                                                                                release):
    """2. A worker dies, and a restart with a broken release is asked for before its
    replacement started: the restart fails, and the slot is served again (the restart had
    cancelled the replacement and nothing started it again: no worker, connections hung)."""
    server = serve(TARGET, "--workers", "2", env={"RELEASE_FILE": str(release)})
    first, second = worker_pids(server)
    os.kill(first, signal.SIGKILL)
    await server.event("worker.exited", 15, worker_pid=first)
    release.write_text("import-error\n")
    server.signal(signal.SIGHUP)
    await server.event("restart.failed", 30)
    release.write_text("v1\n")
    again = await replaced(server)
    assert again not in (first, second)
    seen = set()
    for _ in range(20):
        status, body = await get(server.port, "/release")
        assert status == 200, body
        seen.add(int(body.split()[1]))
    assert seen == {second, again}
    await stops_with_0(server)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


async def test_a_failed_restart_leaves_the_binds_as_they_were(serve, release, tmp_path):
    """5. A restart whose new --config adds a bind and removes one, with a broken release:
    it fails, the added port is not left open with nobody serving it (connections hung
    there), and the removed one is still served, also by a worker that replaces a dead one
    afterwards (it was refused)."""
    kept, dropped, added = free_port(), free_port(), free_port()
    config = tmp_path / "graceful.toml"
    config.write_text(f'bind = ["127.0.0.1:{kept}", "127.0.0.1:{dropped}"]\n')
    server = serve(TARGET, "--config", str(config), env={"RELEASE_FILE": str(release)})
    (first,) = worker_pids(server)
    config.write_text(f'bind = ["127.0.0.1:{kept}", "127.0.0.1:{added}"]\n')
    release.write_text("import-error\n")
    server.signal(signal.SIGHUP)
    await server.event("restart.failed", 30)
    assert refused(added)
    release.write_text("v1\n")
    os.kill(first, signal.SIGKILL)
    again = await replaced(server)
    for port in (kept, dropped):
        status, body = await get(port, "/release")
        assert status == 200 and int(body.split()[1]) == again, (port, body)
    assert refused(added)
    await stops_with_0(server)


async def test_an_old_workers_cut_drain_is_said_by_restart_and_by_the_exit_code(serve,
                                                                                 release):
    """7. A restart whose old worker cuts a request at its drain deadline (exit 3): the new
    worker serves, so `graceful restart` does not say the restart failed (exit 1 means the
    old workers serve on); it says the new workers serve and what the old worker's stop
    cut, and exits 3 as serve's exit codes say; the service's own exit says 3 too, as the
    worst of its workers'."""
    server = serve(TARGET, "--drain-timeout", "1", "--cancel-grace", "0.5",
                   env={"RELEASE_FILE": str(release)})
    (old,) = worker_pids(server)
    held = asyncio.create_task(get(server.port, "/slow?s=30"))
    await asyncio.sleep(0.5)
    done = await asyncio.to_thread(restart, server.pid)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "restarted" in done.stdout and "exit code 3" in done.stderr, (done.stdout,
                                                                        done.stderr)
    outcome = server.wait_for("restart.done")
    assert outcome["old_exit_code"] == 3 and outcome["replaced"] == [old]
    await asyncio.gather(held, return_exceptions=True)  # cut: its connection closed
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 30) == 3


async def test_restarts_asked_for_in_a_burst_are_served_by_the_next_restart_together(
        serve, release):
    """6. Ten SIGHUPs 50 ms apart while a restart runs: those queued behind it are served
    by one more restart (its code is what was on disk at the last request), not by nine
    more one after another; every request has an outcome."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    worker_pids(server)
    release.write_text("slow\n")
    for _ in range(10):
        server.signal(signal.SIGHUP)
        await asyncio.sleep(0.05)
    release.write_text("v2\n")
    server.signal(signal.SIGHUP)
    deadline = time.monotonic() + 60

    def outcomes() -> list[dict[str, Any]]:
        return [e for e in server.events if e["event"] in ("restart.done", "restart.failed")]

    while sum(e.get("requests", 1) for e in outcomes()) < 11:
        assert time.monotonic() < deadline, server.names()
        await asyncio.sleep(0.1)
    assert len(outcomes()) == 2, outcomes()
    assert [e["event"] for e in outcomes()] == ["restart.done"] * 2, outcomes()
    status, body = await get(server.port, "/release")
    assert status == 200 and body.startswith("v2 "), body
    await stops_with_0(server)


async def test_a_second_stop_during_a_restarts_hand_over_reaches_the_old_worker(
        serve, release, tmp_path):
    """1b. With --checkpoint, a restart while a long request runs on the old worker (the
    hand-over waits for it), then Ctrl+C twice: the second one reaches the old worker, which
    cancels the request at once (a second Ctrl+C cancels); the new worker waiting for the
    state is not taken for dead and replaced in the middle of the stop."""
    server = serve(TARGET, "--checkpoint", str(tmp_path / "s.ckpt"),
                   env={"RELEASE_FILE": str(release)})
    worker_pids(server)
    held = asyncio.create_task(get(server.port, "/slow?s=30"))
    await asyncio.sleep(0.5)
    server.signal(signal.SIGHUP)
    await server.event("worker.ready", 30, generation=1)
    server.signal(signal.SIGINT)
    await asyncio.sleep(1.0)
    began = time.monotonic()
    server.signal(signal.SIGINT)
    await asyncio.wait_for(asyncio.gather(held, return_exceptions=True), 10)  # cancelled
    assert time.monotonic() - began < 8
    await asyncio.to_thread(server.wait_exit, 30)
    assert not [e for e in server.events if e["event"] == "worker.exited"], server.names()


IMPORTS_WATCHED = """
import builtins, signal, sys
sys.argv = ["graceful", "serve", "--help"]
real_import, seen = builtins.__import__, []
def watching(name, *args, **kwargs):
    if name == "click" and not seen:
        seen.append(signal.getsignal(signal.SIGHUP))
        print("SIGHUP at click's import:", seen[0], file=sys.stderr)
    return real_import(name, *args, **kwargs)
builtins.__import__ = watching
from graceful.cli.entry import main
main()
"""


def test_serve_holds_its_signals_before_the_command_line_is_imported():
    """11. The window a SIGHUP kills `graceful serve` in ends before the command line's
    imports (click's alone take tens of ms on a loaded machine): when click is imported,
    SIGHUP already has graceful's handler, not the default action."""
    done = subprocess.run([sys.executable, "-c", IMPORTS_WATCHED], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "SIGHUP at click's import: Handlers.SIG_DFL" not in done.stderr, done.stderr
    assert "SIGHUP at click's import: <bound method EarlySignals._record" in done.stderr


def interpreter_up(pid: int, timeout: float = 10.0) -> None:
    """Python has started: it catches SIGINT (for KeyboardInterrupt) before any of our code
    runs, which a signal sent earlier cannot meet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as status:
            caught = next(line for line in status if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & (1 << (signal.SIGINT - 1)):
            return
        time.sleep(0.001)
    raise AssertionError("the interpreter did not start")


def test_a_sighup_in_the_first_moment_of_the_process_does_not_kill_it(tmp_path, release):
    """11. SIGHUP 200 ms after the interpreter started (a deploy script's reload
    racing the start): the supervisor is not killed by the signal's default action; it
    starts and serves, and exits 0 at the stop."""
    port = free_port()
    for delay in (0.2,):
        proc = subprocess.Popen(
            [sys.executable, "-m", "graceful", "serve", TARGET, "--port", str(port),
             "--log-format", "json"], cwd=ROOT, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, env={**os.environ, "RELEASE_FILE": str(release)})
        try:
            interpreter_up(proc.pid)
            time.sleep(delay)
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while refused(port):
                assert proc.poll() is None, f"SIGHUP {delay}s after the exec: {proc.returncode}"
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
        assert code == 0, (delay, code)


async def test_a_log_reader_that_stops_reading_stops_neither_serving_nor_the_stop(release):
    """3. stdout and stderr are a pipe whose reader stopped reading (a stalled log shipper,
    a terminal after Ctrl+S): requests are still answered once the pipe is full, and
    SIGTERM still stops the service with exit 0 (the supervisor blocked in its write to the
    pipe: requests hung, SIGTERM was ignored until the reader read again)."""
    port = free_port()
    stalled, log_end = os.pipe()  # nobody reads `stalled` until the end
    proc = subprocess.Popen(
        [sys.executable, "-m", "graceful", "serve", TARGET, "--port", str(port),
         "--access-log", "--log-format", "json", "--workers", "2"],
        cwd=ROOT, stdout=log_end, stderr=log_end,
        env={**os.environ, "RELEASE_FILE": str(release)})
    os.close(log_end)
    try:
        deadline = time.monotonic() + 30
        while refused(port):
            assert proc.poll() is None and time.monotonic() < deadline
            await asyncio.sleep(0.05)
        for _ in range(1500):  # an access line each: some 300 KB, the pipe holds 64 KiB
            status, _ = await asyncio.wait_for(get(port, "/release"), 10)
            assert status == 200
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 20)
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(stalled)


async def test_a_stop_while_no_worker_serves_a_slot_is_not_a_clean_exit(serve, release):
    """11. A worker dies and every replacement fails (a broken deploy on disk, a crash
    loop): the service served nothing in that slot, so its stop exits 1, not 0
    (`supervisor.exit` names the slots). One death whose replacement is still starting
    at the stop is not that (test 1: exit 0)."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    (first,) = worker_pids(server)
    release.write_text("import-error\n")
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while len([e for e in server.events if e["event"] == "worker.exited"]) < 3:
        assert time.monotonic() < deadline, server.names()
        await asyncio.sleep(0.1)
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 30) == 1
    assert server.wait_for("supervisor.exit", 1)["unserved"] == [1]


async def test_a_helper_in_a_session_of_its_own_ends_with_its_worker(serve):
    """11. A helper the app starts with a session of its own (setsid, as a daemon does),
    never stopped by the app: out of its worker's process group, it piled up, one per
    restart, also under graceful as PID 1. The supervisor, their subreaper, ends it with
    its worker; the new worker's helper runs on."""
    server = serve("tests.operator_app:create_app", env={"START_HELPER": "session"})
    worker_pids(server)
    old_helper = int((await get(server.port, "/helper"))[1])
    done = await asyncio.to_thread(restart, server.pid)
    assert done.returncode == 0, done.stderr
    new_helper = int((await get(server.port, "/helper"))[1])
    assert await ended(old_helper, 15)
    assert alive(new_helper)
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 30) == 0
    assert await ended(new_helper, 15)
