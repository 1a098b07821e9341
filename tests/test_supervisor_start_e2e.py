"""The supervisor's start as operators' surroundings make it (a fresh-context review found
each of these; each test failed on the code before its fix). The real CLI in a subprocess,
real signals and sockets.

1. A parent that ignores SIGCHLD (kept across exec): a killed worker is still seen and
   replaced.
2. A stop while the first worker fails to import the app: the service exits 2, not 0.
3. `--fd 3` that was not passed: one line, exit 2 (the early worker's descriptors are not
   taken for it).
4. More sockets than one message carries (SCM_RIGHTS, 253 on Linux), and the checkpoint's
   lock after them: every address answers at the first start.
5. Standard descriptors closed by the parent get /dev/null before anything else opens one.
6. A descriptor inherited above the descriptor limit does not stop every spawn.
7. Ctrl+C in the first moment of a start with 3 workers: no worker prints a traceback (it
   depends on the moment: the review saw it in 4 of 8 starts).
8. `graceful restart` during the start waits for it, then restarts.
9. SIGTERM after SIGTERM while a start that failed by itself exits: exit 2 every time, not
   the signal's death (the supervisor put the signals back to their default for its last
   moments: 8 of 8 died of SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graceful.host.processes import alive
from tests.conftest import ROOT
from tests.test_supervisor_e2e import restart

CONSOLE_SCRIPT = Path(sys.executable).with_name("graceful")
APP = "tests.apps:basic"
BROKEN = "tests.no_such_module:app"


def free_ports(count: int) -> list[int]:
    holders = []
    for _ in range(count):
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holders.append(holder)
    ports = [holder.getsockname()[1] for holder in holders]
    for holder in holders:
        holder.close()
    return ports


def serve(*args: str, **popen) -> subprocess.Popen:
    popen.setdefault("stdout", subprocess.DEVNULL)
    popen.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen([str(CONSOLE_SCRIPT), "serve", *args, "--log-format", "json"],
                            cwd=ROOT, text=True, **popen)


def wait_answers(port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def workers_of(supervisor: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == supervisor:
                found.append(int(entry))
    return found


def stop(proc: subprocess.Popen) -> int:
    children = workers_of(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    finally:
        proc.kill()
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    return code


def test_1_a_parent_that_ignores_sigchld_does_not_hide_a_dead_worker():
    port = free_ports(1)[0]
    proc = serve(APP, "--port", str(port),
                 preexec_fn=lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN))
    try:
        assert wait_answers(port)
        [worker] = workers_of(proc.pid)
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and workers_of(proc.pid) in ([], [worker]):
            time.sleep(0.1)
        assert workers_of(proc.pid) not in ([], [worker]), "the dead worker was not replaced"
        assert wait_answers(port)
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize("after_s", [0.3, 0.6])
def test_2_a_stop_during_a_start_that_fails_by_itself_exits_2(after_s):
    started = time.monotonic()
    proc = serve(BROKEN, "--port", "0")
    # its first worker exists once it catches signals (a SIGTERM before the interpreter
    # runs ends any Python program, and on a loaded machine that can take 0.6 s)
    deadline = started + 30
    while not workers_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(max(0.0, started + after_s - time.monotonic()))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert "no_such_module" in err
    assert proc.returncode == 2, err


def test_3_an_fd_that_was_not_passed_is_one_line_not_the_early_workers():
    proc = subprocess.Popen([str(CONSOLE_SCRIPT), "serve", "--fd", "3", APP], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            close_fds=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert "--fd 3: not open" in err, err


def test_4_sockets_beyond_one_message_and_the_lock_after_them(tmp_path):
    ports = free_ports(260)
    binds = [arg for port in ports for arg in ("--bind", f"127.0.0.1:{port}")]
    proc = serve(APP, *binds, "--checkpoint", str(tmp_path / "state.json"))
    try:
        assert wait_answers(ports[0])
        silent = [port for port in ports if not wait_answers(port, 5)]
        assert silent == []
    finally:
        assert stop(proc) == 0


def test_5_closed_standard_descriptors_get_dev_null():
    port = free_ports(1)[0]
    proc = serve(APP, "--port", str(port), stdin=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL, preexec_fn=lambda: [os.close(fd) for fd in (0, 1, 2)])
    try:
        assert wait_answers(port)
        os.kill(proc.pid, signal.SIGHUP)  # a restart opens and closes more of them
        time.sleep(3)
        assert wait_answers(port)
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{proc.pid}/fd/{fd}") == "/dev/null", fd
    finally:
        assert stop(proc) == 0


def test_6_a_descriptor_inherited_above_the_limit_does_not_stop_the_spawns(tmp_path):
    port = free_ports(1)[0]
    script = ('exec 200>"$1"; ulimit -n 128; exec "$2" serve --port "$3" --log-format json '
              f'{APP}')
    proc = subprocess.Popen(["bash", "-c", script, "bash", str(tmp_path / "lock"),
                             str(CONSOLE_SCRIPT), str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_answers(port), proc.stderr.read() if proc.poll() is not None else ""
    finally:
        assert stop(proc) == 0


@pytest.mark.parametrize("after_s", [0.25, 0.35, 0.45])
def test_7_ctrl_c_in_the_first_moment_prints_no_worker_traceback(after_s):
    proc = serve(APP, "--port", "0", "--workers", "3", start_new_session=True)
    time.sleep(after_s)
    os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl+C: the supervisor's group
    _, err = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" not in err and "Traceback" not in err, err
    assert proc.returncode == 0, err


SLOW_START_APP = """
import asyncio
import contextlib

from aiohttp import web


async def fast(request):
    return web.Response(text="fast")


async def slowly(app):
    await asyncio.sleep(2)


def create_app():
    app = web.Application()
    app.router.add_get("/fast", fast)
    app.on_startup.append(slowly)
    return app
"""


async def test_8_graceful_restart_during_the_start_waits_for_it(tmp_path):
    (tmp_path / "slowapp.py").write_text(SLOW_START_APP)
    port = free_ports(1)[0]
    proc = serve("slowapp:create_app", "--app-dir", str(tmp_path), "--port", str(port))
    try:
        await asyncio.sleep(0.5)  # the supervisor's own start is done, its workers' is not
        done = await asyncio.to_thread(restart, proc.pid)
        assert done.returncode == 0, done.stderr
        assert wait_answers(port)
    finally:
        assert stop(proc) == 0


def test_9_signals_while_a_failed_start_exits_do_not_end_it_by_the_signal():
    codes = []
    for _ in range(3):
        proc = serve(BROKEN, "--port", "0", "--workers", "2")
        try:
            proc.stderr.readline()  # the worker's error line: the start has failed
            while proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
                time.sleep(0.002)
        finally:
            proc.kill()
            codes.append(proc.wait(60))
            proc.stderr.close()
    assert codes == [2, 2, 2]
