"""Restart in place on SIGHUP: the successor takes the listening sockets, and no connection
is refused, reset or left unanswered at any instant (issue 15).

Every process a test starts is ended by its pid: the predecessor by the `serve` fixture,
each successor (its own process group) by the `successors` fixture, read from the log.
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
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graceful.processes import alive
from tests.conftest import ROOT
from tests.rawhttp import Connection

TARGET = "tests.deployed:create_app"


@pytest.fixture
def successors() -> Iterator[list[int]]:
    """Successor pids the test learnt from the log: each process group killed at the end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def release(tmp_path: Path) -> Path:
    path = tmp_path / "release"
    path.write_text("v1\n")
    return path



async def ended(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class Load:
    """Clients that keep sending /slow?s=0.3 until told to stop: half on a new connection
    each time, half on keep-alive connections (reopened when the server closes one)."""

    def __init__(self, port: int, clients: int = 20) -> None:
        self.port, self.clients = port, clients
        self.outcomes: Counter[str] = Counter()
        self.errors: list[str] = []
        self.bodies: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> Load:
        self._tasks = [asyncio.create_task(self._client(keep_alive=i % 2 == 0))
                       for i in range(self.clients)]
        return self

    async def answered(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.outcomes["ok"] < count:
            assert time.monotonic() < deadline, self.outcomes
            await asyncio.sleep(0.01)

    async def finish(self) -> Counter[str]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes

    async def _client(self, keep_alive: bool) -> None:
        conn: Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = await Connection.open(self.port)
                conn.send("GET", "/slow?s=0.3",
                          headers={} if keep_alive else {"Connection": "close"})
                response = await asyncio.wait_for(conn.read_response(), 10)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as err:
                kind = ("refused" if isinstance(err, ConnectionRefusedError) else
                        "reset" if isinstance(err, ConnectionResetError) else
                        "unanswered")
                self.outcomes[kind] += 1
                self.errors.append(f"{time.time():.3f} keep_alive={keep_alive} {err!r}")
                if conn is not None:
                    conn.writer.close()
                conn = None
                continue
            self.outcomes["ok" if response.status == 200 else str(response.status)] += 1
            self.bodies[response.body.decode().split()[0]] += 1
            if not keep_alive or response.closes:
                conn.writer.close()
                conn = None
        if conn is not None:
            conn.writer.close()


async def get(port: int, path: str) -> tuple[int, str]:
    conn = await Connection.open(port)
    try:
        response = await conn.request("GET", path)
        return response.status, response.body.decode()
    finally:
        conn.writer.close()


async def stop_successor(server: Any, pid: int) -> None:
    """SIGTERM the successor and read the rest of the shared log (its end closes the pipe)."""
    os.kill(pid, signal.SIGTERM)
    assert await ended(pid)
    await asyncio.to_thread(server.wait)


async def test_sighup_hands_the_sockets_to_a_successor_without_losing_a_request(
        serve, successors, release):
    """1. Under load (keep-alive and new connections), SIGHUP: the successor imports the new
    release, reports ready, and only then does the predecessor drain and exit 0. No request
    is refused, reset or left unanswered; the successor answers from then on."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    load = Load(server.port).start()
    await load.answered(20)
    release.write_text("v2\n")
    server.signal(signal.SIGHUP)
    # the log is read on a thread: the clients must keep running meanwhile
    spawned = await asyncio.to_thread(server.wait_for, "restart.spawned")
    successors.append(spawned["successor_pid"])
    ready = await asyncio.to_thread(server.wait_for, "restart.ready")
    assert ready["successor_pid"] == spawned["successor_pid"]
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
    answered = load.outcomes["ok"]
    await load.answered(answered + 40)  # the successor alone now
    outcomes = await load.finish()
    assert set(outcomes) == {"ok"}, (outcomes, load.errors[:5])
    assert load.bodies["v1"] > 0 and load.bodies["v2"] > 0
    assert await get(server.port, "/readyz") == (200, "ready\n")
    status, body = await get(server.port, "/release")
    assert (status, body) == (200, f"v2 {spawned['successor_pid']}\n")
    assert server.wait_for("stop.requested")["source"] == "RESTART"
    server.wait_for("process.exit", code=0)
    names = server.names()
    assert names.index("restart.ready") < names.index("listeners.closed")
    await stop_successor(server, spawned["successor_pid"])


async def test_graceful_restart_command_reports_the_hand_over(
        serve, successors, release, tmp_path):
    """2. `graceful restart --pid-file PATH` sends the request and exits 0 once the successor
    took over; the predecessor then exits 0 and the pid file names the successor. A restart
    that fails exits 1 with the reason."""
    pid_file = tmp_path / "app.pid"
    server = serve(TARGET, "--pid-file", str(pid_file), env={"RELEASE_FILE": str(release)})
    for _ in range(500):  # written just after server.started
        if pid_file.exists():
            break
        await asyncio.sleep(0.01)
    assert pid_file.read_text() == f"{server.proc.pid}\n"
    command = [sys.executable, "-m", "graceful", "restart", "--pid-file", str(pid_file)]
    release.write_text("startup-error")
    failed = await asyncio.to_thread(subprocess.run, command, cwd=ROOT, capture_output=True,
                                     text=True, timeout=60)
    assert failed.returncode == 1, failed.stderr
    assert "exited before it was ready (exit code 1)" in failed.stderr
    successors.append(server.wait_for("restart.spawned")["successor_pid"])
    release.write_text("v2\n")
    restart = await asyncio.to_thread(subprocess.run, command, cwd=ROOT, capture_output=True,
                                      text=True, timeout=60)
    del successors[:]
    successors.append(server.wait_for("restart.ready")["successor_pid"])
    assert restart.returncode == 0, restart.stderr
    assert f"pid {successors[0]}" in restart.stdout
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
    assert pid_file.read_text() == f"{successors[0]}\n"
    assert (await get(server.port, "/release"))[1].startswith("v2 ")
    await stop_successor(server, successors[0])


async def serves_on(server: Any, release: str = "v1") -> None:
    """The predecessor still serves, ready, from its own release."""
    assert await get(server.port, "/readyz") == (200, "ready\n")
    assert await get(server.port, "/release") == (200, f"{release} {server.proc.pid}\n")


async def restart_fails(server: Any, successors: list[int]) -> dict[str, Any]:
    server.signal(signal.SIGHUP)
    successors.append((await asyncio.to_thread(server.wait_for, "restart.spawned")
                       )["successor_pid"])
    failed = await asyncio.to_thread(server.wait_for, "restart.failed", 30)
    assert failed["successor_pid"] == successors[-1]
    assert await ended(successors[-1], 5)
    return failed


async def stops_with_0(server: Any) -> None:
    """A later stop is the ordinary one: exit 0, whatever the failed restart was."""
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0


@pytest.mark.parametrize(("deployed", "exit_code", "said"), [
    ("import-error", 2, "cannot import name 'Settings'"),
    ("startup-error", 1, "the database refused the connection"),
    ("exit", 7, None),
])
async def test_a_successor_that_fails_leaves_the_old_one_serving(
        serve, successors, release, deployed, exit_code, said):
    """3. A successor that fails to import, raises in on_startup or exits: restart.failed
    gives its exit code and last log lines; the old process serves on, ready, and stops
    later with exit 0."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    release.write_text(deployed)
    failed = await restart_fails(server, successors)
    assert failed["exit_code"] == exit_code
    assert failed["reason"] == "exited before it was ready"
    if said is not None:
        assert any(said in line for line in failed["last_lines"]), failed["last_lines"]
    await serves_on(server)
    await stops_with_0(server)


async def test_a_successor_not_ready_in_time_is_ended(serve, successors, release):
    """4. A successor whose on_startup hangs is ended at --restart-timeout (its process
    group); a second SIGHUP meanwhile is coalesced, not stacked."""
    server = serve(TARGET, "--restart-timeout", "1.5", env={"RELEASE_FILE": str(release)})
    release.write_text("hang")
    server.signal(signal.SIGHUP)
    successors.append((await asyncio.to_thread(server.wait_for, "restart.spawned")
                       )["successor_pid"])
    server.signal(signal.SIGHUP)
    coalesced = await asyncio.to_thread(server.wait_for, "restart.coalesced")
    assert coalesced["successor_pid"] == successors[0]
    failed = await asyncio.to_thread(server.wait_for, "restart.failed", 30)
    assert failed["reason"] == "not ready within 1.5s"
    assert await ended(successors[0], 5)
    assert server.names().count("restart.spawned") == 1
    await serves_on(server)
    await stops_with_0(server)


async def test_a_successor_killed_mid_hand_over_leaves_the_old_one_serving(
        serve, successors, release):
    """5. The successor is killed (SIGKILL) while it starts: restart.failed, exit code -9;
    the old process serves on."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    release.write_text("hang")
    server.signal(signal.SIGHUP)
    successors.append((await asyncio.to_thread(server.wait_for, "restart.spawned")
                       )["successor_pid"])
    os.kill(successors[0], signal.SIGKILL)
    failed = await asyncio.to_thread(server.wait_for, "restart.failed", 30)
    assert failed["exit_code"] == -signal.SIGKILL
    await serves_on(server)
    await stops_with_0(server)


async def test_sigterm_while_the_successor_starts_ends_it(serve, successors, release):
    """6. SIGTERM during a restart, the successor not yet ready: the successor (its group) is
    ended at once, the old process stops the normal way with exit 0."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    release.write_text("hang")
    server.signal(signal.SIGHUP)
    successors.append((await asyncio.to_thread(server.wait_for, "restart.spawned")
                       )["successor_pid"])
    conn = (await server.hold("/slow?s=0.5")).conn
    server.signal(signal.SIGTERM)
    assert (await conn.read_response()).status == 200
    assert await asyncio.to_thread(server.wait) == 0
    assert "restart.abandoned" in server.names()
    assert await ended(successors[0], 5)


async def test_sigterm_after_the_hand_over_stops_both(serve, successors, release):
    """7. SIGTERM to the old process while it drains after the hand-over: the successor,
    already serving, is stopped the normal way too (SIGTERM), and both answer what they
    had in flight."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    # An upload half sent: in flight until the rest comes, however long the successor
    # takes to be ready (a request of fixed length could end before the hand-over).
    conn = (await server.hold("/upload", "POST", b"x" * 10,
                              headers={"Content-Length": "20"})).conn
    release.write_text("v2")
    server.signal(signal.SIGHUP)
    successors.append((await asyncio.to_thread(server.wait_for, "restart.ready")
                       )["successor_pid"])
    await asyncio.to_thread(server.wait_for, "listeners.closed")
    server.signal(signal.SIGTERM)
    forwarded = await asyncio.to_thread(server.wait_for, "restart.stop_forwarded")
    assert forwarded["successor_pid"] == successors[0]
    assert await ended(successors[0], 15)
    conn.writer.write(b"y" * 10)
    response = await conn.read_response()
    assert (response.status, response.body) == (200, f"v1 {server.proc.pid} 20\n".encode())
    assert await asyncio.to_thread(server.wait) == 0  # its own drain was not forced


async def test_a_predecessor_killed_mid_hand_over_leaves_the_successor_serving(
        serve, successors, release):
    """8. The old process is killed (SIGKILL) while its successor starts: the successor
    finishes its start and serves; a connection made in between waits in the kernel's
    queue, which the successor holds, and is answered."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    release.write_text("slow")
    server.signal(signal.SIGHUP)
    successors.append((await asyncio.to_thread(server.wait_for, "restart.spawned")
                       )["successor_pid"])
    server.proc.kill()
    server.proc.wait(10)
    conn = await Connection.open(server.port)  # not refused: the successor holds the socket
    response = await asyncio.wait_for(conn.request("GET", "/release"), 10)
    assert (response.status, response.body) == (200, f"slow {successors[0]}\n".encode())
    conn.writer.close()
    assert await get(server.port, "/readyz") == (200, "ready\n")
    os.kill(successors[0], signal.SIGTERM)
    assert await ended(successors[0])


async def test_with_a_checkpoint_the_successor_starts_from_the_final_state(
        serve, successors, release, tmp_path):
    """9. With --checkpoint: the successor is prepared (app built, on_startup run) while the
    old process serves, but accepts only once the old one has drained and flushed its final
    state, which it then takes as its own. Under load, the counter each request increments
    is never lost nor applied twice: the answers are 1..N, each once, and the file holds N."""
    checkpoint = tmp_path / "state.ckpt"
    server = serve(TARGET, "--checkpoint", str(checkpoint), "--checkpoint-interval", "0.05",
                   env={"RELEASE_FILE": str(release)})
    counts: list[int] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            status, body = await get(server.port, "/count?s=0.05")
            assert status == 200
            counts.append(int(body))

    clients = [asyncio.create_task(client()) for _ in range(10)]
    while len(counts) < 50:
        await asyncio.sleep(0.01)
    server.signal(signal.SIGHUP)
    successors.append((await asyncio.to_thread(server.wait_for, "restart.ready")
                       )["successor_pid"])
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
    took_over = await asyncio.to_thread(server.wait_for, "restart.took_over")
    assert took_over["generation"] >= 1
    lock = checkpoint.with_name("state.ckpt.lock")  # the lock, adopted, names its holder
    assert lock.read_text() == f"{successors[0]}\n"
    at_exit = len(counts)
    while len(counts) < at_exit + 50:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*clients)
    assert sorted(counts) == list(range(1, len(counts) + 1))
    await stop_successor(server, successors[0])
    shown = subprocess.run([sys.executable, "-m", "graceful", "checkpoint", "show",
                            str(checkpoint)], capture_output=True, text=True, check=True)
    assert f'"count": {len(counts)}' in shown.stdout


async def test_a_unix_socket_is_served_by_the_successor_and_removed_by_it_alone(
        serve, successors, release, tmp_path):
    """`--bind unix:PATH`, SIGHUP: the old process must leave the socket file to the
    successor that now serves it (it removed the file at its exit: every later connection
    by path failed), and the successor removes it at its own stop."""
    path = tmp_path / "app.sock"
    server = serve(TARGET, "--bind", f"unix:{path}", env={"RELEASE_FILE": str(release)})
    server.signal(signal.SIGHUP)
    ready = await asyncio.to_thread(server.wait_for, "restart.ready")
    successors.append(ready["successor_pid"])
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
    reader, writer = await asyncio.open_unix_connection(str(path))
    response = await Connection(reader, writer).request("GET", "/readyz")
    writer.close()
    assert response.status == 200
    await stop_successor(server, ready["successor_pid"])
    assert not path.exists()


RELEASE_APP = '''from aiohttp import web


async def version(request):
    return web.Response(text="{release}")


def create_app():
    app = web.Application()
    app.router.add_get("/version", version)
    return app
'''


def releases(folder: Path) -> Path:
    """releases/v1 and releases/v2 of an app answering its version, and `current` -> v1."""
    for release in ("v1", "v2"):
        (folder / "releases" / release).mkdir(parents=True)
        (folder / "releases" / release / "relapp.py").write_text(
            RELEASE_APP.format(release=release))
    current = folder / "current"
    current.symlink_to(folder / "releases" / "v1")
    return current


def switch(link: Path, target: Path) -> None:
    """Point `link` at `target` the way `ln -sfn` and deploy tools do: one rename."""
    switched = link.with_name(link.name + ".new")
    switched.symlink_to(target)
    os.replace(switched, link)


async def test_a_symlink_deploy_restarts_into_the_release_the_link_names_now(
        graceful_server, successors, tmp_path):
    """The deploy most teams script: releases/v1, releases/v2, and `current` a symlink
    switched from one to the other, the server started in `current` (PWD says so, as a
    shell or systemd's WorkingDirectory= sets it). SIGHUP after the switch must serve v2.
    It served v1: the successor inherited the old process's working directory, which is
    the physical releases/v1 the link named at the start (gunicorn re-enters PWD too)."""
    current = releases(tmp_path)
    server = graceful_server("relapp:create_app", cwd=current, env={"PWD": str(current)})
    assert await get(server.port, "/version") == (200, "v1")
    switch(current, tmp_path / "releases" / "v2")
    server.signal(signal.SIGHUP)
    ready = await asyncio.to_thread(server.wait_for, "restart.ready")
    successors.append(ready["successor_pid"])
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
    assert await get(server.port, "/version") == (200, "v2")
    await stop_successor(server, ready["successor_pid"])


async def test_a_checkpoint_path_that_names_another_file_in_the_successor_fails_the_restart(
        graceful_server, successors, tmp_path):
    """The symlink deploy with `--checkpoint state.json` relative to the release folder:
    in the successor it names releases/v2/state.json, not the file the old process holds
    and flushes. The successor adopted the old lock anyway and started from an empty
    state (the old one's flushed to the other file): state lost without a word. Now the
    successor refuses (exit 4, the checkpoint's code; `restart.failed` naming both files)
    and the old process serves on with its state."""
    current = releases(tmp_path)
    server = graceful_server("relapp:create_app", "--checkpoint", "state.json",
                             cwd=current, env={"PWD": str(current)})
    switch(current, tmp_path / "releases" / "v2")
    server.signal(signal.SIGHUP)
    spawned = await asyncio.to_thread(server.wait_for, "restart.spawned")
    successors.append(spawned["successor_pid"])
    failed = await asyncio.to_thread(server.wait_for, "restart.failed")
    assert failed["exit_code"] == 4
    assert any("state.json" in line and "another file" in line
               for line in failed["last_lines"]), failed["last_lines"]
    assert await get(server.port, "/version") == (200, "v1")
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
    assert (tmp_path / "releases" / "v1" / "state.json").exists()
    assert not (tmp_path / "releases" / "v2" / "state.json").exists()


async def scrape(port: int) -> tuple[int, str]:
    """GET /metrics (HTTP/1.0: the server closes once the page is sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0, body.decode()


async def first_of(server: Any, *names: str, timeout: float = 30.0) -> dict[str, Any]:
    """The first logged event with one of these names."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := [event for event in server.events if event.get("event") in names]:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"none of {names} within {timeout:g}s")


@pytest.mark.parametrize("fixed_port", [True, False])
async def test_the_metrics_listener_is_handed_over_too(serve, successors, release, fixed_port):
    """10. With --metrics-bind, the metrics socket goes to the successor with the app's
    (named graceful-metrics), which serves /metrics from it instead of binding the port the
    old process still holds (which failed: exit 2, restart.failed; with port 0 it bound
    another port, and the one scraped was refused once the old process exited). A scrape in
    a loop through the hand-over is always answered whole: never refused, nor cut by the old
    process's exit. Once the old process exited the successor answers on the same port."""
    with socket.socket() as probe:  # a port nobody listens on, as an operator would choose
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    server = serve(TARGET, "--metrics-bind", f"127.0.0.1:{free if fixed_port else 0}",
                   env={"RELEASE_FILE": str(release)})
    port = server.wait_for("metrics.started")["port"]
    assert port == free or not fixed_port
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    stop = asyncio.Event()

    async def scraper() -> None:
        while not stop.is_set():
            try:
                status, body = await scrape(port)
            except (OSError, TimeoutError) as err:
                outcomes["refused" if isinstance(err, ConnectionRefusedError) else "error"] += 1
                errors.append(repr(err))
            else:
                ok = status == 200 and "graceful_phase" in body
                outcomes["ok" if ok else str(status)] += 1
                if not ok:
                    errors.append(f"{status} {body[-200:]!r}")
            await asyncio.sleep(0.005)

    async def scraped(count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while outcomes["ok"] < count:
            assert not task.done() and time.monotonic() < deadline, (outcomes, errors[:5])
            await asyncio.sleep(0.01)

    task = asyncio.create_task(scraper())
    await scraped(3)
    release.write_text("v2\n")
    server.signal(signal.SIGHUP)
    successors.append((await asyncio.to_thread(server.wait_for, "restart.spawned")
                       )["successor_pid"])
    outcome = await first_of(server, "restart.ready", "restart.failed")
    assert outcome["event"] == "restart.ready", outcome
    assert outcome["successor_pid"] == successors[0]
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
    await scraped(outcomes["ok"] + 3)  # the successor alone now
    stop.set()
    await task
    assert set(outcomes) == {"ok"}, (outcomes, errors[:5])
    status, page = await scrape(port)
    assert status == 200 and 'graceful_phase{phase="ready"} 1.0' in page, page
    await stop_successor(server, successors[0])
    started = [event for event in server.events if event["event"] == "metrics.started"]
    assert [event["port"] for event in started] == [port, port]
    assert "restart.failed" not in server.names()
