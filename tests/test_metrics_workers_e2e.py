"""/metrics with workers answers for the service, whichever worker accepts the scrape: the
real CLI, real signals, real sockets (prometheus_client's multiprocess mode behind it).

1. --workers 2: every scrape shows the app's Counter summed over the workers, each worker's
   phase (its pid), and the requests held in flight on both workers.
2. A worker SIGKILLed with requests in flight and replaced: what it counted stays in the
   totals (not lost, not counted twice), its phase and its requests in flight leave the page.
3. Through `graceful restart`, scraped in a loop: no page shows a worker "starting", every
   page has the whole count; after it, the new workers alone, ready.
3b. Through three restarts, scraped in a loop: every page has the whole count, and the
   folder holds the serving workers' files and one file per kind for every worker that has
   exited (their counts added up), not two more files for each replaced worker.
4. The folder the workers write to is private (0700) and removed once the service stopped;
   one the user named in PROMETHEUS_MULTIPROC_DIR is used, said so, and kept; one that is
   not a folder is a usage error.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
from pathlib import Path

import pytest

from tests.loadgen import ended, get
from tests.test_metrics_e2e import _value, scrape
from tests.test_supervisor_e2e import restart

APP = "tests.apps:instrumented"
WORKERS = ("--workers", "2", "--metrics-bind", "127.0.0.1:0", "--drain-timeout", "0.5")
PHASE = re.compile(r'graceful_phase\{phase="(\w+)",pid="(\d+)"\} (\S+)')


def phases(page: str) -> dict[int, list[str]]:
    """For each worker (pid) on the page, the phases at 1."""
    seen: dict[int, list[str]] = {}
    for name, pid, value in PHASE.findall(page):
        at = seen.setdefault(int(pid), [])
        if float(value) == 1:
            at.append(name)
    return seen


async def hits(server, count: int) -> None:
    """`count` hits of the app's Counter, each on a connection of its own (spread over the
    workers as the kernel hands the connections out)."""
    for _ in range(count):
        assert (await get(server.port, "/hit"))[0] == 200


async def stopped_and_cleaned(server) -> None:
    """SIGTERM: the requests held are cut at the drain's deadline; the folder removed."""
    folder = Path(server.wait_for("metrics.multiprocess")["folder"])
    server.signal(signal.SIGTERM)
    await asyncio.to_thread(server.wait_exit, 30)
    assert not folder.exists()


async def scrape_until(server, done: asyncio.Event, pages: list[str]) -> None:
    while not done.is_set():
        pages.append(await scrape(server))
        await asyncio.sleep(0.01)


async def restarts_done(server, count: int) -> list[dict]:
    """The `restart.done` events, once there are `count` of them."""
    for _ in range(200):
        done = [event for event in server.events if event.get("event") == "restart.done"]
        if len(done) >= count:
            return done
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} restart.done")


async def test_every_scrape_shows_the_service(serve):
    """1."""
    server = serve(APP, *WORKERS)
    workers = set(server.wait_for("supervisor.ready")["workers"])
    await hits(server, 30)
    held = [await server.hold("/slow?s=30") for _ in range(6)]
    await asyncio.sleep(1.0)  # the other worker's count is written every 0.25 s
    for _ in range(10):
        page = await scrape(server)
        assert _value(page, "app_hits_total") == 30
        assert phases(page) == {pid: ["ready"] for pid in workers}, page
        assert _value(page, "graceful_requests_in_flight") == len(held)
        assert "process_cpu_seconds_total" not in page  # one process's: not the service's
    await stopped_and_cleaned(server)


async def test_a_killed_worker_counts_stay_and_its_live_values_go(serve):
    """2."""
    server = serve(APP, *WORKERS)
    workers = set(server.wait_for("supervisor.ready")["workers"])
    await hits(server, 20)
    held = [await server.hold("/slow?s=30") for _ in range(4)]
    victim = held[0].entered["pid"]
    left_in_flight = sum(1 for h in held if h.entered["pid"] != victim)
    os.kill(victim, signal.SIGKILL)
    replaced = await server.event("worker.ready", 30, replaced=True)
    serving = workers - {victim} | {replaced["worker_pid"]}
    await hits(server, 10)
    await asyncio.sleep(1.0)
    for _ in range(10):
        page = await scrape(server)
        assert _value(page, "app_hits_total") == 30
        assert phases(page) == {pid: ["ready"] for pid in serving}, page
        assert _value(page, "graceful_requests_in_flight") == left_in_flight
    await stopped_and_cleaned(server)


async def test_a_restart_never_shows_a_starting_worker(serve):
    """3."""
    server = serve(APP, *WORKERS)
    old = set(server.wait_for("supervisor.ready")["workers"])
    await hits(server, 25)
    pages: list[str] = []
    done = asyncio.Event()

    async def scraper() -> None:
        while not done.is_set():
            pages.append(await scrape(server))
            await asyncio.sleep(0.01)

    task = asyncio.create_task(scraper())
    outcome = await asyncio.to_thread(restart, server.pid)
    assert outcome.returncode == 0, outcome.stderr
    new = set(server.wait_for("restart.done")["workers"])
    for pid in old:
        assert await ended(pid, 15)
    await asyncio.sleep(0.3)
    done.set()
    await task
    assert len(pages) > 20
    for page in pages:
        assert _value(page, "app_hits_total") == 25, page
        for pid, at in phases(page).items():
            assert at in (["ready"], ["draining"], ["stopped"]), (pid, at)
            assert pid in old or at == ["ready"], (pid, at)
    page = await scrape(server)
    assert phases(page) == {pid: ["ready"] for pid in new}, page
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 30) == 0


async def test_restarts_keep_every_count_in_a_folder_that_does_not_grow(serve):
    """3b."""
    server = serve(APP, *WORKERS)
    folder = Path(server.wait_for("metrics.multiprocess")["folder"])
    workers = set(server.wait_for("supervisor.ready")["workers"])
    total = 0
    for restarted in range(3):
        await hits(server, 10)
        total += 10
        await asyncio.sleep(1.0)  # the other worker's count is written every 0.25 s
        pages: list[str] = []
        done = asyncio.Event()
        task = asyncio.create_task(scrape_until(server, done, pages))
        outcome = await asyncio.to_thread(restart, server.pid)
        assert outcome.returncode == 0, outcome.stderr
        for pid in workers:
            assert await ended(pid, 15)
        workers = set((await restarts_done(server, restarted + 1))[-1]["workers"])
        await asyncio.sleep(0.3)
        done.set()
        await task
        assert pages and all(_value(page, "app_hits_total") == total for page in pages)
    for kind in ("counter", "histogram"):
        files = {path.name for path in folder.glob(f"{kind}_*.db")}
        assert files <= {f"{kind}_{pid}.db" for pid in workers} | {f"{kind}_exited.db"}, files
        assert f"{kind}_exited.db" in files
    assert _value(await scrape(server), "app_hits_total") == total
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 30) == 0


async def test_the_folder_is_private_and_removed_at_the_stop(serve):
    """4. graceful's own folder."""
    server = serve(APP, *WORKERS)
    workers = server.wait_for("supervisor.ready")["workers"]
    chosen = server.wait_for("metrics.multiprocess")
    assert chosen["source"] == "graceful"
    folder = Path(chosen["folder"])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    await hits(server, 3)
    assert {f"counter_{pid}.db" for pid in workers} <= {p.name for p in folder.iterdir()}
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 30) == 0
    assert not folder.exists()


async def test_a_folder_the_user_named_is_used_and_kept(serve, tmp_path):
    """4. PROMETHEUS_MULTIPROC_DIR set by the user."""
    folder = tmp_path / "prom"
    folder.mkdir()
    server = serve(APP, *WORKERS, env={"PROMETHEUS_MULTIPROC_DIR": str(folder)})
    chosen = server.wait_for("metrics.multiprocess")
    assert chosen["source"] == "PROMETHEUS_MULTIPROC_DIR" and chosen["folder"] == str(folder)
    await hits(server, 3)
    assert _value(await scrape(server), "app_hits_total") == 3
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 30) == 0
    assert any(p.name.startswith("counter_") for p in folder.iterdir())


@pytest.mark.parametrize("what", ["missing", "file"])
async def test_a_user_folder_that_is_not_one_is_a_usage_error(serve, tmp_path, what):
    """4."""
    path = tmp_path / "prom"
    if what == "file":
        path.write_text("")
    server = serve(APP, *WORKERS, env={"PROMETHEUS_MULTIPROC_DIR": str(path)},
                   wait_started=False)
    assert await server.exited() == 2
    assert f"PROMETHEUS_MULTIPROC_DIR='{path}' is not a folder" in "".join(server.raw)
    assert "supervisor.ready" not in server.names()
