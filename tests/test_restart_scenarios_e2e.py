"""Restarts under the supervisor, in the situations the self-replacing restart was tested in:
a new worker that is late, killed or failing; a stop in the middle of a restart; a unix
socket; a symlink deploy; a relative checkpoint path; the metrics listener. Real CLI, real
signals, real sockets, bounded waits.

Every process a test starts is ended by its pid: the supervisor by the `serve` (or
`graceful_server`) fixture, the workers it logged (`worker.started`, each a process group of
its own) by the plugin's kill.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from graceful import checkpoint
from graceful.host.processes import alive
from tests.loadgen import Load, ended, get
from tests.rawhttp import Connection

TARGET = "tests.deployed:create_app"


def worker_pids(server: Any) -> list[int]:
    return server.wait_for("supervisor.ready")["workers"]


async def started(server: Any, generation: int, count: int = 1,
                  timeout: float = 30.0) -> list[int]:
    """The pids of the `count` workers a restart (its generation) started, once logged."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [e["worker_pid"] for e in server.events
                if e.get("event") == "worker.started" and e.get("generation") == generation]
        if len(pids) >= count:
            return pids
        assert time.monotonic() < deadline, f"generation {generation}: {pids}"
        await asyncio.sleep(0.02)


async def serves_on(server: Any, pids: list[int], release: str = "v1") -> None:
    """The old workers still serve, ready, their own release."""
    assert (await get(server.port, "/readyz")) == (200, "ready\n")
    for _ in range(4 * len(pids)):
        status, body = await get(server.port, "/release")
        assert status == 200 and body.split()[0] == release, body
        assert int(body.split()[1]) in pids, (body, pids)


async def stops_with_0(server: Any) -> None:
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 30) == 0


async def test_a_new_worker_not_ready_in_time_is_ended_and_the_old_one_serves_on(
        serve, release):
    """1. A new release whose on_startup hangs, --restart-timeout 1.5: the new worker is
    ended (its pid gone) at the timeout, `restart.failed` says "not ready within 1.5s", and
    the old worker serves on. A second SIGHUP sent meanwhile is queued, not merged: it runs
    after the first, with a worker of its own, and fails the same way. The service still
    stops with exit 0."""
    server = serve(TARGET, "--restart-timeout", "1.5", env={"RELEASE_FILE": str(release)})
    old = worker_pids(server)
    release.write_text("hang\n")
    server.signal(signal.SIGHUP)
    (first,) = await started(server, 1)
    server.signal(signal.SIGHUP)
    queued = await server.event("restart.requested", 10, queued_behind=1)
    assert queued["source"] == "SIGHUP"
    failed = await server.event("restart.failed", 30)
    assert failed["reason"] == "not ready within 1.5s", failed
    assert failed["worker_pid"] == first
    assert await ended(first, 5)
    (second,) = await started(server, 2)
    assert second != first
    failures = [e for e in server.events if e["event"] == "restart.failed"]
    while len(failures) < 2:
        await asyncio.sleep(0.05)
        failures = [e for e in server.events if e["event"] == "restart.failed"]
        assert server.running()
    assert failures[1]["worker_pid"] == second and failures[1]["reason"] == "not ready within 1.5s"
    assert await ended(second, 5)
    await serves_on(server, old)
    await stops_with_0(server)


async def test_a_new_worker_killed_mid_restart_leaves_the_old_one_serving(serve, release):
    """2. The new worker is SIGKILLed while it starts (its on_startup hangs): the restart
    fails at once naming the signal (not at --restart-timeout), the old worker serves on
    and later stops with exit 0."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    old = worker_pids(server)
    release.write_text("hang\n")
    server.signal(signal.SIGHUP)
    (new,) = await started(server, 1)
    await asyncio.sleep(0.3)
    killed_at = time.monotonic()
    os.kill(new, signal.SIGKILL)
    failed = await server.event("restart.failed", 30)
    assert time.monotonic() - killed_at < 10, "the restart waited for its timeout"
    assert failed["worker_pid"] == new and failed["signal"] == "SIGKILL", failed
    assert "exited before it was ready" in failed["reason"]
    await serves_on(server, old)
    await stops_with_0(server)


@pytest.mark.parametrize(("deployed", "exit_code", "said"), [
    ("startup-error", 1, "the database refused the connection"),
    ("exit", 7, None),
])
async def test_a_new_worker_that_fails_to_start_leaves_the_old_one_serving(
        serve, release, deployed, exit_code, said):
    """3. A new release that raises in on_startup or exits in it: `restart.failed` gives the
    new worker's exit code and last log lines; it is gone; the old worker serves on and
    the service stops later with exit 0."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    old = worker_pids(server)
    release.write_text(f"{deployed}\n")
    server.signal(signal.SIGHUP)
    (new,) = await started(server, 1)
    failed = await server.event("restart.failed", 30)
    assert failed["worker_pid"] == new and failed["exit_code"] == exit_code, failed
    assert failed["reason"].startswith("exited before it was ready"), failed
    if said is not None:
        assert any(said in line for line in failed["last_lines"]), failed["last_lines"]
    assert await ended(new, 5)
    await serves_on(server, old)
    await stops_with_0(server)


async def test_sigterm_while_new_workers_start_ends_them_and_clients_see_refusals_at_most(
        serve, release):
    """4. --workers 2 under load (keep-alive and new connections), a restart whose new
    worker hangs in on_startup (the first: they start one at a time), then SIGTERM: the new
    worker is ended
    (`restart.abandoned`), the old ones drain (a request in flight is answered 200) and the
    service exits 0. No client sees a reset, a response cut short or a request left
    unanswered at any time; a refusal only after the stop began (once the workers closed
    their listeners: the supervisor does not keep the socket open behind them)."""
    server = serve(TARGET, "--workers", "2", env={"RELEASE_FILE": str(release)})
    old = worker_pids(server)
    load = Load(server.port, clients=10).start()
    await load.answered(20)
    release.write_text("hang\n")
    server.signal(signal.SIGHUP)
    new = await started(server, 1, 1)
    await asyncio.sleep(0.5)  # the new worker is importing or in on_startup
    held = await server.hold("/slow?s=1")
    stop_at = time.time()
    server.signal(signal.SIGTERM)
    response = await asyncio.wait_for(held.conn.read_response(), 30)
    assert response.status == 200
    assert int(response.body.split()[1]) in old
    assert await asyncio.to_thread(server.wait_exit, 30) == 0
    outcomes = await load.finish()
    assert set(outcomes) <= {"ok", "refused"}, (outcomes, load.errors[:10])
    early = [e for e in load.errors if float(e.split()[0]) < stop_at]
    assert not early, early[:5]
    abandoned = server.wait_for("restart.abandoned")
    assert sorted(abandoned["pids"]) == sorted(new)
    for pid in (*new, *old):
        assert await ended(pid, 5)
    assert [e["code"] for e in server.events if e["event"] == "supervisor.exit"] == [0]


async def test_sigterm_while_the_old_worker_drains_after_a_restart_answers_it(
        serve, release):
    """5. A request in flight on the old worker (an upload half sent) when a restart
    replaces it; SIGTERM to the supervisor while the old worker drains: the new worker
    stops, the old one goes on draining as a stop does (its request is answered in full,
    by it), and the service exits 0 only once both have exited."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    (old,) = worker_pids(server)
    held = await server.hold("/upload", "POST", b"x" * 10, headers={"Content-Length": "20"})
    release.write_text("v2\n")
    server.signal(signal.SIGHUP)
    (new,) = await started(server, 1)
    await server.event("worker.ready", 30, worker_pid=new)
    await server.event("stop.requested", 30, source="RESTART")  # the old worker drains
    server.signal(signal.SIGTERM)
    await server.event("supervisor.stopping", 10)
    await asyncio.sleep(0.5)
    assert alive(old), "the old worker was ended with a request in flight"
    assert server.running(), "the supervisor exited before its old worker had drained"
    held.conn.writer.write(b"y" * 10)
    response = await asyncio.wait_for(held.conn.read_response(), 30)
    assert (response.status, response.body) == (200, f"v1 {old} 20\n".encode())
    assert await asyncio.to_thread(server.wait_exit, 30) == 0
    assert await ended(old, 5) and await ended(new, 5)


async def test_an_old_worker_killed_while_its_replacement_starts(serve, release):
    """6. The old worker is SIGKILLed while the restart's new worker starts (one second in
    on_startup): the port never refuses (the socket is the supervisor's), the restart ends
    with the new release serving, and exactly one worker serves the slot afterwards; a
    SIGTERM then stops the service with exit 0 and every worker it started is gone."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    (old,) = worker_pids(server)
    load = Load(server.port, clients=6).start()
    await load.answered(10)
    release.write_text("slow\n")
    server.signal(signal.SIGHUP)
    await started(server, 1)
    os.kill(old, signal.SIGKILL)
    outcome = await server.event("restart.done", 30)
    await load.answered(load.outcomes["ok"] + 10, timeout=20)
    outcomes = await load.finish()
    assert outcomes["refused"] == 0, (outcomes, load.errors[:5])
    assert outcomes["ok"] > 0
    await asyncio.sleep(1.5)  # any replacement still pending has started by now
    workers = {e["worker_pid"] for e in server.events if e["event"] == "worker.started"}
    running = sorted(pid for pid in workers if alive(pid))
    assert running == outcome["workers"], (running, outcome)
    status, body = await get(server.port, "/release")
    assert status == 200 and body.startswith("slow "), body
    await stops_with_0(server)
    for pid in workers:
        assert await ended(pid, 5)


async def test_a_unix_socket_is_served_across_a_restart_and_removed_at_the_stop(
        serve, release, tmp_path):
    """7. `--bind unix:PATH`: requests by path in a loop through a restart are all
    answered (none refused: the old worker's stop leaves the file alone); the new
    release answers after it; the file is still there while the service runs and is
    removed once it has stopped."""
    path = tmp_path / "app.sock"
    server = serve(TARGET, "--bind", f"unix:{path}", env={"RELEASE_FILE": str(release)},
                   wait_started=False)
    worker_pids(server)
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    stop = asyncio.Event()

    async def by_path() -> str:
        reader, writer = await asyncio.open_unix_connection(str(path))
        try:
            response = await asyncio.wait_for(
                Connection(reader, writer).request("GET", "/release"), 10)
        finally:
            writer.close()
        assert response.status == 200, response
        return response.body.decode()

    async def client() -> None:
        while not stop.is_set():
            try:
                outcomes[(await by_path()).split()[0]] += 1
            except (OSError, TimeoutError, AssertionError) as err:
                outcomes["error"] += 1
                errors.append(repr(err))
            await asyncio.sleep(0.01)

    clients = [asyncio.create_task(client()) for _ in range(4)]
    release.write_text("v2\n")
    server.signal(signal.SIGHUP)
    outcome = await server.event("restart.done", 30)
    for pid in outcome["replaced"]:
        assert await ended(pid, 10)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*clients)
    assert set(outcomes) == {"v1", "v2"}, (outcomes, errors[:5])
    assert path.exists()
    assert (await by_path()).startswith("v2 ")
    await stops_with_0(server)
    assert not path.exists()


RELEASE_APP = '''import asyncio

from aiohttp import web

import graceful


async def version(request):
    return web.Response(text="{release}")


async def count(request):
    state = graceful.state(request)
    await asyncio.sleep(0.02)
    state["count"] = state.get("count", 0) + 1
    return web.Response(text=str(state["count"]))


def create_app():
    app = web.Application()
    app.router.add_get("/version", version)
    app.router.add_get("/count", count)
    return app
'''


def releases(folder: Path) -> Path:
    """releases/v1 and releases/v2 of an app answering its version, and `current` -> v1."""
    for name in ("v1", "v2"):
        (folder / "releases" / name).mkdir(parents=True)
        (folder / "releases" / name / "relapp.py").write_text(RELEASE_APP.format(release=name))
    current = folder / "current"
    current.symlink_to(folder / "releases" / "v1")
    return current


def switch(link: Path, target: Path) -> None:
    """Point `link` at `target` the way `ln -sfn` and deploy tools do: one rename."""
    switched = link.with_name(link.name + ".new")
    switched.symlink_to(target)
    os.replace(switched, link)


async def test_a_symlink_deploy_restarts_into_the_release_the_link_names_now(
        graceful_server, tmp_path):
    """8. The deploy most teams script: releases/v1, releases/v2, `current` a symlink
    switched from one to the other, the service started in `current` (PWD says so, as a
    shell or systemd's WorkingDirectory= sets it). A SIGHUP after the switch serves v2
    from the same supervisor; the old worker (v1) has exited."""
    current = releases(tmp_path)
    server = graceful_server("relapp:create_app", cwd=current, env={"PWD": str(current)})
    (old,) = worker_pids(server)
    assert await get(server.port, "/version") == (200, "v1")
    switch(current, tmp_path / "releases" / "v2")
    server.signal(signal.SIGHUP)
    outcome = await server.event("restart.done", 30)
    assert outcome["replaced"] == [old]
    assert await ended(old, 10)
    assert await get(server.port, "/version") == (200, "v2")
    assert server.running()
    await stops_with_0(server)


async def test_a_relative_checkpoint_follows_the_file_the_service_started_with(
        graceful_server, tmp_path):
    """9. The symlink deploy with `--checkpoint state.json`, relative: at the start it
    names releases/v1/state.json; after the switch, in the new worker's folder, it would
    name releases/v2/state.json. The supervisor made it absolute at its start, so the
    restart succeeds and the state follows the file the service started with: counted by
    clients through the restart, the answers are 1..N, each once (none lost, none applied
    twice), releases/v1/state.json holds N at the stop and no releases/v2/state.json is
    ever written."""
    current = releases(tmp_path)
    server = graceful_server("relapp:create_app", "--checkpoint", "state.json",
                             cwd=current, env={"PWD": str(current)})
    worker_pids(server)
    counts: list[int] = []
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            status, body = await get(server.port, "/count")
            assert status == 200, body
            counts.append(int(body))

    clients = [asyncio.create_task(client()) for _ in range(4)]
    while len(counts) < 20:
        await asyncio.sleep(0.01)
    switch(current, tmp_path / "releases" / "v2")
    server.signal(signal.SIGHUP)
    outcome = await server.event("restart.done", 30)
    assert await ended(outcome["replaced"][0], 10)
    assert await get(server.port, "/version") == (200, "v2")
    at_restart = len(counts)
    while len(counts) < at_restart + 20:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.gather(*clients)
    assert sorted(counts) == list(range(1, len(counts) + 1))
    await stops_with_0(server)
    kept = tmp_path / "releases" / "v1" / "state.json"
    assert checkpoint.read(kept).state == {"count": len(counts)}
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


@pytest.mark.parametrize("fixed_port", [True, False])
async def test_the_metrics_listener_answers_across_a_restart(serve, release, fixed_port):
    """10. --metrics-bind (a chosen port, or port 0): a scrape in a loop through a restart
    is always answered whole, never refused nor cut, on the same port, which every worker
    serves (`metrics.started` names it for the old worker and the new one); once the old
    worker has exited, the page says phase ready."""
    with socket.socket() as probe:  # a port nobody listens on, as an operator would choose
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    server = serve(TARGET, "--metrics-bind", f"127.0.0.1:{free if fixed_port else 0}",
                   env={"RELEASE_FILE": str(release)})
    (old,) = worker_pids(server)
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
    outcome = await server.event("restart.done", 30)
    assert outcome["replaced"] == [old]
    assert await ended(old, 10)
    await scraped(outcomes["ok"] + 3)  # the new worker alone now
    stop.set()
    await task
    tracebacks = [line for line in server.raw if not line.startswith("{")]
    assert set(outcomes) == {"ok"}, (outcomes, errors[:5], "".join(tracebacks)[-3000:])
    status, page = await scrape(port)
    (new,) = outcome["workers"]
    assert status == 200 and f'graceful_phase{{phase="ready",pid="{new}"}} 1.0' in page, page
    assert f'pid="{old}"' not in page, page
    started_on = [e["port"] for e in server.events if e["event"] == "metrics.started"]
    assert started_on == [port, port]
    await stops_with_0(server)
