"""The first worker is spawned before the supervisor reads its command line
(graceful/supervisor/early_worker.py). These check what that must not change: a start that
does not serve leaves no worker behind, and the first worker serves what the options say
with what a worker is given (its sockets, configuration, lock and environment), the same
as a worker spawned later.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.loadgen import get

CONSOLE_SCRIPT = Path(sys.executable).with_name("graceful")
SUPERVISOR_ENV = b"GRACEFUL_SUPERVISOR_PID="


def workers_of(supervisor: int) -> list[int]:
    """Processes started for `supervisor` (their environment names it), still there."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if SUPERVISOR_ENV + str(supervisor).encode() + b"\0" in environ:
            found.append(int(entry))
    return found


@pytest.fixture
def taken_port():
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    yield holder.getsockname()[1]
    holder.close()


@pytest.mark.parametrize("case", ["refused option", "port in use", "help"])
def test_a_start_that_does_not_serve_leaves_no_worker_behind(case, taken_port):
    args = {"refused option": ["tests.apps:basic", "--port", "not-a-port"],
            "port in use": ["tests.apps:basic", "--port", str(taken_port)],
            "help": ["--help"]}[case]
    proc = subprocess.Popen([str(CONSOLE_SCRIPT), "serve", *args, "--host", "127.0.0.1"],
                            cwd=Path(__file__).parent.parent, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == (0 if case == "help" else 2), err
    left = workers_of(proc.pid)  # at once: its end must have ended them
    for pid in left:
        os.kill(pid, 9)
    assert left == []
    if case != "help":
        assert len(err.strip().splitlines()) == 1, err  # the one line, nothing from a worker


async def test_the_first_worker_serves_what_the_options_say(tmp_path, unused_tcp_port):
    """Its configuration, its sockets (two binds), its checkpoint lock and state, and the
    metrics folder in its environment came on its setup socket."""
    checkpoint = tmp_path / "state.json"
    second = unused_tcp_port
    proc = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "serve", "tests.apps:basic", "--bind", "127.0.0.1:0",
         "--bind", f"127.0.0.1:{second}", "--checkpoint", str(checkpoint),
         "--metrics-bind", "127.0.0.1:0", "--log-format", "json", "--drain-timeout", "5"],
        cwd=Path(__file__).parent.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True)
    from graceful.testing.process import SubprocessServer

    server = SubprocessServer.following(proc)
    try:
        ready = server.wait_for("supervisor.ready")
        started = server.wait_for("server.started")
        assert started["pid"] != proc.pid and started["pid"] in ready["workers"]
        ports = {int(address.rsplit(":", 1)[1]) for address in ready["addresses"]}
        assert second in ports and len(ports) >= 2, ready
        for port in ports:
            assert (await get(port, "/fast"))[0] == 200
        for _ in range(3):
            await get(second, "/count")
        metrics = server.wait_for("metrics.started")
        status, body = await get(metrics["port"], "/metrics")
        assert status == 200 and "graceful_" in body
        proc.send_signal(15)
        assert proc.wait(timeout=60) == 0
        assert json.loads(checkpoint.read_text())  # written by the first worker at its stop
    finally:
        server.kill()
