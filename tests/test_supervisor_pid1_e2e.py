"""The supervisor as PID 1 of its PID namespace, as in a container whose entrypoint is
`graceful serve`, and as the child of a container init (dumb-init, as `docker run --init`
runs tini). When PID 1 exits the kernel kills every other process of the namespace, and the
orphans of the namespace are PID 1's to reap.

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

from graceful.host.processes import alive
from graceful.testing.process import SubprocessServer
from tests.conftest import ROOT
from tests.loadgen import Load, ended, get

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PID namespaces are Linux's")

TARGET = "tests.orphans:create_app"


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
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return found


def namespace_pids(init: int) -> dict[int, int]:
    """The processes of the PID namespace whose PID 1 is host pid `init`: namespace pid ->
    host pid. Read from every /proc entry (a reparented orphan is not always listed in its
    new parent's `children` file)."""
    try:
        namespace = os.readlink(f"/proc/{init}/ns/pid")
    except (FileNotFoundError, ProcessLookupError):
        return {}
    mapping: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            if os.readlink(f"/proc/{entry}/ns/pid") != namespace:
                continue
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    mapping[int(line.split()[-1])] = int(entry)
    return mapping


def state_and_parent(pid: int) -> tuple[str, int] | None:
    """(state letter, parent's host pid) of a process, None once it is gone (reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[1])


def zombies(root: int) -> list[int]:
    """Host pids of the zombies under `root` (included)."""
    return [pid for pid in namespace_pids(root).values()
            if (seen := state_and_parent(pid)) is not None and seen[0] == "Z"]


def dumb_init() -> str | None:
    """dumb-init (a dev dependency: its wheel ships the binary beside our interpreter)."""
    beside = Path(sys.executable).parent / "dumb-init"
    return str(beside) if beside.exists() else shutil.which("dumb-init")


class Namespace:
    """graceful serve as PID 1 of a new PID namespace, or as the child of a container init
    that is PID 1 (`init`: its command), its log followed; the served app is marked
    (graceful.testing.child) so that `server.hold()` sees a handler run."""

    def __init__(self, env: dict[str, str], init: list[str]) -> None:
        command = ["unshare", "--pid", "--fork", "--mount-proc", *init, sys.executable,
                   "-m", "graceful.testing.child", "serve", TARGET, "--host", "127.0.0.1",
                   "--port", "0", "--log-format", "json"]
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
        self.ready = self.server.wait_for("supervisor.ready", 30)
        self.supervisor = self.host_pid(self.ready["pid"])

    def host_pid(self, ns_pid: int) -> int:
        return namespace_pids(self.init)[ns_pid]

    def signal(self, signum: int) -> None:
        """To PID 1, as `docker kill -s` and `docker stop` send it."""
        os.kill(self.init, signum)

    def wait(self, timeout: float = 30.0) -> int:
        """The exit code of the namespace's PID 1 (unshare passes it on)."""
        return self.server.wait_exit(timeout)

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
    """graceful as PID 1 ("pid1"), or as the child of dumb-init as PID 1 ("dumb-init"): its
    exit ends the container either way. Yields a starter and the release file."""
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

    def start() -> Namespace:
        ns = Namespace({"RELEASE_FILE": str(release)}, init)
        started.append(ns)
        return ns

    start.release = release  # type: ignore[attr-defined]
    start.pid1 = request.param == "pid1"  # type: ignore[attr-defined]
    yield start
    for ns in started:
        ns.close()


async def test_sighup_to_pid_1_restarts_and_pid_1_stays(namespace):
    """1. SIGHUP to PID 1 under load, twice (a deploy, then another): each restart replaces
    the worker with one serving the release on disk; the supervisor is the same process
    throughout (PID 1 itself, or dumb-init's child); every request is answered; the old
    workers are gone, reaped (no zombie in the namespace)."""
    ns = namespace()
    server = ns.server
    if namespace.pid1:
        assert ns.ready["pid"] == 1 and ns.supervisor == ns.init
    load = Load(server.port, clients=10).start()
    await load.answered(10)
    replaced: list[int] = []
    for generation, deployed in ((1, "v2"), (2, "v3")):
        namespace.release.write_text(f"{deployed}\n")
        ns.signal(signal.SIGHUP)
        done = await _restart_done(server, generation)
        replaced += done["replaced"]
        await load.answered(load.outcomes["ok"] + 10, timeout=20)
        status, body = await get(server.port, "/release")
        assert status == 200 and body.split()[0] == deployed, body
        assert alive(ns.supervisor)
    outcomes = await load.finish()
    assert set(outcomes) == {"ok"}, (outcomes, load.errors[:5])
    assert ns.host_pid(ns.ready["pid"]) == ns.supervisor
    assert set(replaced).isdisjoint(namespace_pids(ns.init)), "an old worker is still there"
    assert not zombies(ns.init)
    ns.signal(signal.SIGTERM)
    assert await asyncio.to_thread(ns.wait) == 0


async def _restart_done(server: Any, generation: int) -> dict[str, Any]:
    """The outcome of the restart that started generation `generation`."""
    deadline = time.monotonic() + 30
    while True:
        done = [e for e in server.events if e.get("event") in ("restart.done", "restart.failed")]
        if len(done) >= generation:
            assert done[generation - 1]["event"] == "restart.done", done[generation - 1]
            return done[generation - 1]
        assert time.monotonic() < deadline, f"no outcome for restart {generation}"
        await asyncio.sleep(0.02)


async def test_docker_stop_drains_and_exits_0(namespace):
    """2. `docker stop`: SIGTERM to PID 1 with a request in flight: the worker drains (the
    request is answered 200), the supervisor exits 0 and so does the container."""
    ns = namespace()
    server = ns.server
    (worker,) = ns.ready["workers"]
    held = await server.hold("/slow?s=1")
    ns.signal(signal.SIGTERM)
    response = await asyncio.wait_for(held.conn.read_response(), 30)
    assert response.status == 200 and response.body.split()[1] == str(worker).encode()
    assert await asyncio.to_thread(ns.wait) == 0
    assert [e["code"] for e in server.events if e["event"] == "supervisor.exit"] == [0]


async def test_docker_stop_while_the_old_worker_drains_after_a_reload_answers_it(namespace):
    """3. `docker stop` soon after a reload: SIGTERM to PID 1 while the replaced worker
    still drains a request (an upload half sent). The container must not end before that
    worker has answered: PID 1's exit would have the kernel kill it mid-request."""
    ns = namespace()
    server = ns.server
    (old,) = ns.ready["workers"]
    held = await server.hold("/upload", "POST", b"x" * 10, headers={"Content-Length": "20"})
    namespace.release.write_text("v2\n")
    ns.signal(signal.SIGHUP)
    await server.event("worker.ready", 30, generation=1)
    await server.event("stop.requested", 30, source="RESTART")  # the old worker drains
    ns.signal(signal.SIGTERM)
    await server.event("supervisor.stopping", 10)
    await asyncio.sleep(0.5)
    assert ns.proc.poll() is None, "the container ended with a request in flight"
    held.conn.writer.write(b"y" * 10)
    response = await asyncio.wait_for(held.conn.read_response(), 30)
    assert (response.status, response.body) == (200, f"v1 {old} 20\n".encode())
    assert await asyncio.to_thread(ns.wait) == 0


async def test_a_killed_worker_is_reaped_and_replaced(namespace):
    """4. The worker SIGKILLed (the OOM killer): the supervisor reaps it (no zombie), logs
    `worker.exited` with the signal, starts a replacement that serves; PID 1 stays, and a
    later `docker stop` exits 0."""
    ns = namespace()
    server = ns.server
    (worker,) = ns.ready["workers"]
    victim = ns.host_pid(worker)
    os.kill(victim, signal.SIGKILL)
    exited = await server.event("worker.exited", 15)
    assert exited["worker_pid"] == worker and exited["signal"] == "SIGKILL", exited
    replaced = await server.event("worker.ready", 30, replaced=True)
    assert replaced["worker_pid"] != worker
    assert await ended(victim, 5), "the killed worker was left a zombie"
    status, body = await get(server.port, "/release")
    assert (status, body) == (200, f"v1 {replaced['worker_pid']}\n")
    assert alive(ns.supervisor)
    ns.signal(signal.SIGTERM)
    assert await asyncio.to_thread(ns.wait) == 0


async def test_orphaned_grandchildren_are_reaped(namespace):
    """5. The app starts processes that double-fork and exit (a daemonizing helper): each
    grandchild, an orphan, is reparented to the supervisor (PID 1, or the subreaper under
    dumb-init) and, once it exits, reaped: no zombie is left in the namespace, during a
    restart or after it."""
    ns = namespace()
    server = ns.server
    orphans: list[int] = []
    for _ in range(3):
        status, body = await get(server.port, "/orphan?s=1.5")
        assert status == 200, body
        orphans.append(ns.host_pid(int(body)))
    for pid in orphans:
        seen = state_and_parent(pid)
        assert seen is not None and seen[1] == ns.supervisor, (pid, seen, ns.supervisor)
    ns.signal(signal.SIGHUP)  # and one more left by the worker a restart replaces
    status, body = await get(server.port, "/orphan?s=0.5")
    orphans.append(ns.host_pid(int(body)))
    await _restart_done(server, 1)
    deadline = time.monotonic() + 10
    while (left := [(pid, state_and_parent(pid)) for pid in orphans
                    if state_and_parent(pid) is not None]):
        assert time.monotonic() < deadline, f"orphans not reaped: {left}"
        await asyncio.sleep(0.05)
    assert not zombies(ns.init)
    ns.signal(signal.SIGTERM)
    assert await asyncio.to_thread(ns.wait) == 0


def restart_inside(ns: Namespace, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`graceful restart --pid PID` run inside the container (`docker exec`), PID the
    supervisor's pid there (1, or dumb-init's child)."""
    command = ["nsenter", "-t", str(ns.init), "-p", "-m", sys.executable, "-m", "graceful",
               "restart", "--pid", str(ns.ready["pid"]), "--timeout", "30"]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


async def test_graceful_restart_inside_the_container_reports_its_outcome(namespace):
    """6. `graceful restart --pid P` inside the container (`docker exec`, P the
    supervisor's pid there): a release that fails to start exits 1 with the reason (the
    old worker serves on); a good one exits 0 naming this container's new workers, and
    the new release serves."""
    ns = namespace()
    server = ns.server
    (old,) = ns.ready["workers"]
    namespace.release.write_text("startup-error\n")
    failed = await asyncio.to_thread(restart_inside, ns)
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert "exited before it was ready (exit code 1)" in failed.stderr, failed.stderr
    assert await get(server.port, "/release") == (200, f"v1 {old}\n")
    namespace.release.write_text("v2\n")
    done = await asyncio.to_thread(restart_inside, ns)
    assert done.returncode == 0, (done.stdout, done.stderr)
    outcome = await _restart_done(server, 2)
    assert f"pid {ns.ready['pid']} serves with workers {outcome['workers'][0]}" in done.stdout
    status, body = await get(server.port, "/release")
    assert (status, body) == (200, f"v2 {outcome['workers'][0]}\n")
    ns.signal(signal.SIGTERM)
    assert await asyncio.to_thread(ns.wait) == 0


async def test_two_containers_on_the_host_network_each_restart_their_own(namespace):
    """7. Two containers sharing the host's network namespace (`docker run --network
    host`, Kubernetes' hostNetwork), each with graceful as its entrypoint: their
    supervisors have the same pid inside their containers. `graceful restart` inside the
    second must restart the second's workers, not the first's, and each supervisor's
    control socket must be its own (no `supervisor.control_unavailable`)."""
    first, second = namespace(), namespace()
    assert first.ready["pid"] == second.ready["pid"]
    done = await asyncio.to_thread(restart_inside, second)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "restart.requested" not in first.server.names(), \
        f"the other container restarted: {done.stdout}"
    unavailable = [e for ns in (first, second) for e in ns.server.events
                   if e["event"] == "supervisor.control_unavailable"]
    assert not unavailable, unavailable
    restarted = await second.server.event("restart.done", 30)
    status, body = await get(second.server.port, "/release")
    assert status == 200 and int(body.split()[1]) in restarted["workers"], body
