"""Restart in place where graceful is PID 1 of its PID namespace, as in a container whose
entrypoint is `graceful serve` (issue 15). When PID 1 exits the kernel kills every other
process of the namespace: the old process must not exit after the hand-over, or it takes
its successor down with it. It becomes a waiter that keeps PID 1, forwards signals to the
process that serves and exits with its exit code.

The namespace comes from `unshare --pid --fork --mount-proc` (root only). Pids in the log
are the namespace's; the test maps them to its own through /proc/PID/status (NSpid).
Every process is ended by pid at the end: the namespace's PID 1 with SIGKILL (which ends
the namespace) and the unshare process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graceful.processes import alive
from graceful.testing.process import SubprocessServer
from tests.conftest import ROOT
from tests.test_restart_e2e import TARGET, Load, get

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PID namespaces are Linux's")


def _unshare_works() -> str | None:
    """Why a PID namespace cannot be made here, or None."""
    if shutil.which("unshare") is None:
        return "no unshare command (util-linux)"
    try:
        done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unshare failed: {err}"
    if done.returncode != 0:
        return f"unshare --pid refused (needs root or user namespaces): {done.stderr.strip()}"
    return None


def children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    found: list[int] = []
    for tid in tasks:
        with contextlib.suppress(FileNotFoundError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return found


def namespace_pids(root: int) -> dict[int, int]:
    """The processes under host pid `root` (included): namespace pid -> host pid."""
    mapping: dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    mapping[int(line.split()[-1])] = pid
        todo += children(pid)
    return mapping


def dumb_init() -> str | None:
    """dumb-init (a dev dependency: its wheel ships the binary beside our interpreter)."""
    beside = Path(sys.executable).parent / "dumb-init"
    return str(beside) if beside.exists() else shutil.which("dumb-init")


class Namespace:
    """graceful serve as PID 1 of a new PID namespace, or as the child of a container init
    that is PID 1 (`init`: its command), its log followed."""

    def __init__(self, env: dict[str, str], init: list[str], module: str = "graceful") -> None:
        command = ["unshare", "--pid", "--fork", "--mount-proc", *init, sys.executable,
                   "-m", module, "serve", TARGET, "--host", "127.0.0.1", "--port", "0",
                   "--log-format", "json"]
        self.proc = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.server = SubprocessServer.following(self.proc)
        self.init = 0  # host pid of the namespace's PID 1
        deadline = time.monotonic() + 10
        while not self.init:
            assert time.monotonic() < deadline, "unshare started no child"
            found = children(self.proc.pid)
            self.init = found[0] if found else 0
            time.sleep(0.01)
        self.server.started()

    def host_pid(self, ns_pid: int) -> int:
        return namespace_pids(self.init)[ns_pid]

    def signal(self, signum: int) -> None:
        os.kill(self.init, signum)

    def close(self) -> None:
        for pid in (self.init, self.proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


@pytest.fixture(params=["pid1", "dumb-init"])
def namespace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """graceful as PID 1 ("pid1"), or as the child of dumb-init as PID 1 ("dumb-init", as
    `docker run --init` runs it under tini): its exit ends the container either way."""
    if (why := _unshare_works()) is not None:
        pytest.skip(why)
    init: list[str] = []
    if request.param == "dumb-init":
        if (path := dumb_init()) is None:
            pytest.skip("dumb-init is not installed (pip install dumb-init)")
        init = [path]
    release = tmp_path / "release"
    release.write_text("v1\n")
    started: list[Namespace] = []

    def start(module: str = "graceful") -> Namespace:
        # the restart status files in a folder of the test's: namespace pids repeat
        ns = Namespace({"RELEASE_FILE": str(release), "XDG_RUNTIME_DIR": str(tmp_path)},
                       init, module)
        started.append(ns)
        return ns

    yield start
    for ns in started:
        ns.close()


def parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def following_waiter(server: Any) -> int:
    """The namespace pid of the waiter: the old process's, from its restart.waiting."""
    return server.wait_for("restart.waiting")["pid"]


async def answers_for(port: int, seconds: float = 1.0) -> int:
    """GET /readyz again and again for `seconds`: each must be 200."""
    deadline, count = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        assert await get(port, "/readyz") == (200, "ready\n")
        count += 1
        await asyncio.sleep(0.05)
    return count


async def test_as_pid_1_the_old_process_keeps_the_namespace_alive_after_the_hand_over(
        namespace):
    """1. graceful serve is PID 1 of its PID namespace (a container's entrypoint). SIGHUP:
    the successor takes over and the old process stops, but instead of exiting (which
    ends the namespace: the kernel kills the successor) it becomes a waiter that keeps
    PID 1. The service answers on; SIGTERM to PID 1 reaches the successor, which stops
    cleanly, and the waiter exits with its code 0."""
    ns = namespace()
    server = ns.server
    assert server.wait_for("server.started")
    ns.signal(signal.SIGHUP)
    ready = await server.event("restart.ready", 30)
    successor = ns.host_pid(ready["successor_pid"])
    await server.event("process.exit", 30, code=0)  # the old process's stop is done
    await answers_for(server.port)
    assert alive(successor)
    waiting = server.wait_for("restart.waiting")
    assert waiting["successor_pid"] == ready["successor_pid"]
    ns.signal(signal.SIGTERM)
    assert await asyncio.to_thread(ns.proc.wait, 30) == 0
    assert server.wait_for("waiter.exit")["code"] == 0
    assert not alive(successor)


async def test_as_pid_1_a_second_restart_is_forwarded_and_followed(namespace):
    """2. PID 1, now the waiter, gets SIGHUP again: it forwards it to the process that
    serves, whose own successor takes over while the first one exits 0; the waiter
    follows the second successor (it is reparented to PID 1). The service answers
    throughout (no request refused, reset or unanswered), and SIGTERM then ends all with
    exit 0."""
    ns = namespace()
    server = ns.server
    load = Load(server.port, clients=10).start()
    await load.answered(10)
    ns.signal(signal.SIGHUP)
    first = (await server.event("restart.ready", 30))["successor_pid"]
    await server.event("restart.waiting", 30)
    ns.signal(signal.SIGHUP)
    following = await server.event("waiter.following", 30)
    assert following["code"] == 0 and following["pid"] == first
    second = following["successor_pid"]
    assert second != first
    waiter = ns.host_pid(following_waiter(server))
    assert parent(ns.host_pid(second)) == waiter  # reparented to the waiter, not the init
    await load.answered(load.outcomes["ok"] + 20)
    outcomes = await load.finish()
    assert set(outcomes) == {"ok"}, (outcomes, load.errors[:5])
    await answers_for(server.port, 0.5)
    host_second = ns.host_pid(second)
    ns.signal(signal.SIGTERM)
    assert await asyncio.to_thread(ns.proc.wait, 30) == 0
    assert server.wait_for("waiter.exit")["code"] == 0
    assert not alive(host_second)


async def test_graceful_restart_aimed_at_the_waiter_reports_the_outcome(namespace, tmp_path):
    """3. `graceful restart --pid 1` inside the container (`docker exec`), once PID 1 is the
    waiter: the waiter forwards the SIGHUP and records the serving process's outcome as
    its own, so the command exits 1 with the reason for a release that fails to start
    (the serving process serves on) and 0 naming the new successor for a good one. It
    waited out its timeout: nothing recorded an outcome for the waiter's pid."""
    ns = namespace()
    server = ns.server
    ns.signal(signal.SIGHUP)
    waiting = await server.event("restart.waiting", 30)
    command = ["nsenter", "-t", str(ns.init), "-p", "-m", "-w", sys.executable, "-m",
               "graceful", "restart", "--pid", str(waiting["pid"]), "--timeout", "20"]

    async def restart() -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60,
            env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)})

    (tmp_path / "release").write_text("startup-error")
    failed = await restart()
    assert failed.returncode == 1, failed.stderr
    assert "exited before it was ready (exit code 1)" in failed.stderr
    await answers_for(server.port, 0.3)
    (tmp_path / "release").write_text("v2")
    done = await restart()
    assert done.returncode == 0, done.stderr
    following = await server.event("waiter.following", 30)
    assert f"handed over to pid {following['successor_pid']}" in done.stdout
    await answers_for(server.port, 0.3)
    ns.signal(signal.SIGTERM)
    assert await asyncio.to_thread(ns.proc.wait, 30) == 0


async def test_as_pid_1_the_serving_process_killed_ends_the_container_with_128_plus_n(
        namespace):
    """4. The process that serves is killed (SIGKILL, the OOM killer) after the hand-over:
    the waiter has no successor to follow and exits 128+9, as a shell reports it, so the
    container ends and its restart policy applies."""
    ns = namespace()
    server = ns.server
    ns.signal(signal.SIGHUP)
    ready = await server.event("restart.ready", 30)
    await server.event("restart.waiting", 30)
    os.kill(ns.host_pid(ready["successor_pid"]), signal.SIGKILL)
    assert await asyncio.to_thread(ns.proc.wait, 30) == 128 + signal.SIGKILL
    assert server.wait_for("waiter.exit")["code"] == 128 + signal.SIGKILL


async def test_as_pid_1_docker_stop_while_the_old_process_drains_stops_both_with_0(
        namespace):
    """5. `docker stop` soon after a reload: SIGTERM to PID 1 while the old process still
    drains after the hand-over. It is forwarded to the successor, which stops the normal
    way; the old process answers what it had in flight, and the waiter it becomes reaps
    the successor and exits with its code, 0. (The old process's loop reaped the
    successor, and the waiter, with no child left, exited 1.)"""
    ns = namespace("graceful.testing.child")  # the app marked: hold() sees the handler run
    server = ns.server
    # an upload half sent: in flight in the old process until the rest comes
    held = await server.hold("/upload", "POST", b"x" * 10, headers={"Content-Length": "20"})
    ns.signal(signal.SIGHUP)
    ready = await server.event("restart.ready", 30)
    await server.event("listeners.closed", 30)
    ns.signal(signal.SIGTERM)
    forwarded = await server.event("restart.stop_forwarded", 30)
    assert forwarded["successor_pid"] == ready["successor_pid"]
    await server.event("process.exit", 30)  # the successor's: it stopped first
    held.conn.writer.write(b"y" * 10)
    response = await held.conn.read_response()
    assert response.status == 200 and response.body.endswith(b" 20\n")
    assert await asyncio.to_thread(ns.proc.wait, 30) == 0
    exited = server.wait_for("waiter.exit")
    assert (exited["code"], exited["pid"]) == (0, ready["successor_pid"])


async def test_as_pid_1_a_stop_as_the_waiter_starts_is_not_lost(namespace):
    """6. SIGTERM to PID 1 the moment the old process says it becomes the waiter: the
    signal comes while the waiter's interpreter starts, before it has handlers (where PID 1
    of a namespace drops a signal it does not handle). The old process blocked the
    forwarded signals before the exec, so it is kept pending, forwarded once the waiter
    runs, and the successor stops: exit 0."""
    ns = namespace()
    server = ns.server
    ns.signal(signal.SIGHUP)
    ready = await server.event("restart.ready", 30)
    await asyncio.to_thread(server.log.wait_for, "restart.waiting", 30)
    ns.signal(signal.SIGTERM)
    assert await asyncio.to_thread(ns.proc.wait, 30) == 0
    forwarded = server.wait_for("waiter.forwarded")
    assert (forwarded["signal"], forwarded["pid"]) == ("SIGTERM", ready["successor_pid"])
