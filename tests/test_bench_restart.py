"""The restart scenario of `bench drain`: short real runs against graceful's supervisor,
SIGHUP under load: the pid kept, the old workers replaced, the counter checked."""

from __future__ import annotations

import os
from pathlib import Path

from bench.drain import RunSpec, run_one
from bench.scenarios import build
from bench.servers import SERVERS
from graceful.host.processes import alive


async def test_1_restart_run_against_graceful_with_a_checkpoint(tmp_path: Path) -> None:
    """10 keep-alive clients, 100 ms handlers, SIGHUP: nothing lost, the supervisor keeps its
    pid and serves after the window with a new worker, the old one exited within it, the
    harness's SIGTERM after stops it with 0, and the counter in the final checkpoint equals
    the 200s."""
    spec = RunSpec(SERVERS["graceful"], build("restart", 100), 10, "HUP", 0,
                   checkpoint=True)
    r = await run_one(spec, tmp_path)
    assert r["signal"] == "SIGHUP" and r["pid_kept"] and r["exit_code"] == 0
    assert 0 < r["hand_over_s"] < r["window_s"]
    assert r["serving_after"] and r["restart"]["outcome"] == "ok"
    assert r["restart"]["pid"] == r["pid"] and r["restart"]["replaced"] == r["old_workers"]
    assert not set(r["restart"]["workers"]) & set(r["old_workers"])
    assert not any(alive(pid) for pid in (r["pid"], *r["restart"]["workers"]))
    assert (r["lost"], r["race"], r["reset"], r["counts"]["refused"]) == (0, 0, 0, 0)
    assert r["ok_after_signal"] > 10 and r["window_ms"]["n"] > 10
    assert r["count_exact"] and r["count"] == r["counts"]["ok"]
    assert r["took_over_waited_ms"] is not None
    assert os.path.exists(tmp_path / "logs" / f"{spec.slug}.ckpt")


async def test_2_restart_run_against_two_workers(tmp_path: Path) -> None:
    """--workers 2, a new connection per request: both old workers replaced by two new
    ones, nothing lost, refused or reset."""
    spec = RunSpec(SERVERS["graceful-workers2"], build("restart-close", 100), 10, "HUP", 0)
    r = await run_one(spec, tmp_path)
    assert r["pid_kept"] and r["exit_code"] == 0 and r["serving_after"]
    assert len(r["old_workers"]) == 2 and sorted(r["restart"]["replaced"]) == \
        sorted(r["old_workers"])
    assert len(r["restart"]["workers"]) == 2 and r["restart"]["outcome"] == "ok"
    assert (r["lost"], r["race"], r["reset"], r["counts"]["refused"]) == (0, 0, 0, 0)
