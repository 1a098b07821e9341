"""The restart scenario of `bench drain`: a short real run against
graceful, SIGHUP under load, the successor found and stopped, the counter checked."""

from __future__ import annotations

import os
from pathlib import Path

from bench.drain import RunSpec, run_one
from bench.scenarios import build
from bench.servers import SERVERS
from graceful.processes import alive


async def test_1_restart_run_against_graceful_with_a_checkpoint(tmp_path: Path) -> None:
    """10 keep-alive clients, 100 ms handlers, SIGHUP: nothing lost, the old process exits
    0 within the window, the successor serves after it and is stopped by the harness, and
    the counter in the final checkpoint equals the 200s."""
    spec = RunSpec(SERVERS["graceful"], build("restart", 100), 10, "HUP", 0,
                   checkpoint=True)
    r = await run_one(spec, tmp_path)
    assert r["signal"] == "SIGHUP" and r["exit_code"] == 0
    assert 0 < r["hand_over_s"] < r["window_s"]
    assert r["serving_after"] and r["successor_pid"] and not alive(r["successor_pid"])
    assert (r["lost"], r["race"], r["reset"], r["counts"]["refused"]) == (0, 0, 0, 0)
    assert r["ok_after_signal"] > 10 and r["window_ms"]["n"] > 10
    assert r["count_exact"] and r["count"] == r["counts"]["ok"]
    assert r["took_over_waited_ms"] is not None
    assert os.path.exists(tmp_path / "logs" / f"{spec.slug}.ckpt")
