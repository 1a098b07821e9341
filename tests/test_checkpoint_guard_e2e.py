"""The checkpoint refuses at once what would lose state later .

1. A checkpoint folder that does not exist, or cannot be written (a read-only mount), is
   refused at start: exit 4, one line naming the folder and the reason.
2. A stop while a periodic write is in progress on a slow volume: the final flush waits
   for it; every stop exits 0 and PATH.prev is the previous generation, not PATH itself.
3. A second process on the same checkpoint refuses to start (exit 4, naming the pid that
   holds it); the first goes on and keeps its own count.
4. A checkpoint rewritten behind the process's back is not overwritten: exit 4, logged.
5. A large state that never changes costs one serialisation per tick, off the loop where
   the platform can fork, else on it.
6. A large state that changes all the time is serialised off the loop (POSIX): while
   generation after generation is written, the loop never stalls for as long as half of
   one json.dumps of the state (it did for a whole one, and a walk of it, at every tick).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess

import pytest

from graceful import checkpoint as ckpt
from tests.rawhttp import Connection, get


async def test_missing_folder_refused_at_start(serve, tmp_path):
    """1."""
    folder = tmp_path / "not-there"
    server = serve("tests.apps:basic", "--checkpoint", str(folder / "s.json"),
                   wait_started=False)
    assert await asyncio.to_thread(server.wait) == 4
    error = server.wait_for("process.failed")["error"]
    assert str(folder) in error and "does not exist" in error and "\n" not in error
    assert "server.started" not in server.names()


async def test_read_only_folder_refused_at_start(serve, tmp_path):
    """1. A real probe (create, link and remove a file), not the permission bits."""
    where = tmp_path / "ro"
    where.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(where)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a read-only filesystem here: {result.stderr.strip()}")
    try:
        server = serve("tests.apps:basic", "--checkpoint", str(where / "s.json"),
                       wait_started=False)
        assert await asyncio.to_thread(server.wait) == 4
        error = server.wait_for("process.failed")["error"]
        assert str(where) in error and "Read-only file system" in error
        assert "server.started" not in server.names()
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_stop_during_a_slow_periodic_write(serve, tmp_path):
    """2. fsync takes 40 ms, a flush every 50 ms, 8 clean SIGTERMs while writing."""
    path = tmp_path / "s.json"
    for round_ in range(8):
        server = serve("tests.apps:slow_volume", "--checkpoint", str(path),
                       "--checkpoint-interval", "0.05", env={"FSYNC_DELAY_S": "0.04"})
        conn = await Connection.open(server.port)
        for _ in range(3):
            await conn.request("GET", "/count")
            await asyncio.sleep(0.03 + 0.011 * round_)
        server.signal()
        conn.close()
        assert await asyncio.to_thread(server.wait) == 0, server.raw
        assert "checkpoint.failed" not in server.names()
        current, prev = ckpt.read(path), ckpt.read(ckpt.previous_path(path))
        assert os.stat(path).st_ino != os.stat(ckpt.previous_path(path)).st_ino
        assert prev.generation == current.generation - 1
        assert current.state["count"] == 3 * (round_ + 1)
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


async def test_second_process_on_the_same_checkpoint_refuses_to_start(serve, tmp_path):
    """3. A rolling update on a shared volume."""
    path = tmp_path / "s.json"
    old = serve("tests.apps:basic", "--checkpoint", str(path))
    for _ in range(3):
        await get(old.port, "/count")
    new = serve("tests.apps:basic", "--checkpoint", str(path), wait_started=False)
    assert await asyncio.to_thread(new.wait) == 4
    error = new.wait_for("process.failed")["error"]
    assert str(path) in error and f"pid {old.proc.pid}" in error and "\n" not in error
    for _ in range(2):
        await get(old.port, "/count")
    old.signal()
    assert await asyncio.to_thread(old.wait) == 0
    assert ckpt.read(path).state["count"] == 5
    again = serve("tests.apps:basic", "--checkpoint", str(path))  # the lock is free again
    assert again.wait_for("checkpoint.restored")["generation"] == 1
    again.signal()
    assert await asyncio.to_thread(again.wait) == 0


async def test_checkpoint_rewritten_behind_our_back_is_not_overwritten(serve, tmp_path):
    """4. Someone ignores the lock (or removed it) and writes generation 99."""
    path = tmp_path / "s.json"
    server = serve("tests.apps:basic", "--checkpoint", str(path))
    await get(server.port, "/count")
    ckpt.write_atomic(path, ckpt.encode({"theirs": True}, 99))
    server.signal()
    assert await asyncio.to_thread(server.wait) == 4
    error = server.wait_for("checkpoint.failed")["error"]
    assert "generation 99" in error, error
    assert ckpt.read(path).state == {"theirs": True}


async def test_large_unchanged_state_costs_one_serialisation_per_tick(serve, tmp_path):
    """5. The app measures its own loop stalls; they are compared with the time of one
    json.dumps of the same state, measured by the app in the same process. Where it can
    fork, a tick's serialisation is a child's: no stall of half a json.dumps in 2 s of
    ticks. Elsewhere the median tick's stall is under 2 json.dumps (before: three
    serialisations per tick, about 3x)."""
    server = serve("tests.apps:large_state", "--checkpoint", str(tmp_path / "s.json"),
                   "--checkpoint-interval", "0.2", env={"STATE_MB": "5"})
    loop = asyncio.get_running_loop()
    watched_until, deadline = loop.time() + 2, loop.time() + 60
    while True:
        seen = json.loads((await get(server.port, "/lag")).body)
        one_dumps = statistics.median(seen["dumps_ms"])
        ticks = [stall for stall in seen["stalls_ms"] if stall > one_dumps / 2]
        if hasattr(os, "fork") and loop.time() > watched_until:
            break
        if len(ticks) >= 7 or loop.time() > deadline:
            break
        await asyncio.sleep(0.5)
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    if hasattr(os, "fork"):
        assert ticks == [], seen
        return
    assert len(ticks) >= 7, seen
    assert statistics.median(ticks) < 2 * one_dumps, seen


@pytest.mark.skipif(not hasattr(os, "fork"), reason="serialised off the loop where fork is")
async def test_a_large_changing_state_is_serialised_off_the_loop(serve, tmp_path):
    """6."""
    path = tmp_path / "s.json"
    server = serve("tests.apps:large_state", "--checkpoint", str(path),
                   "--checkpoint-interval", "0.2", "--log-level", "debug",
                   env={"STATE_MB": "5", "STATE_CHANGES": "1"})
    for generation in range(1, 7):
        await server.event("checkpoint.flushed", timeout=60, generation=generation)
    seen = json.loads((await get(server.port, "/lag")).body)
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    one_dumps = statistics.median(seen["dumps_ms"])
    # On the loop, each of the 6 flushes would hold it for a whole json.dumps. A loaded
    # machine (other processes on both cores) starves the loop now and then for as long:
    # two such stalls are its, not the serialisation's.
    held = [stall for stall in seen["stalls_ms"] if stall > 0.75 * one_dumps]
    assert len(held) <= 2, seen
    assert ckpt.read(path).state["users"]["user0000000"]["n"] > 0
