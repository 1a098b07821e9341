"""Start and end of the process: hooks, state across restarts, bad targets, failed starts.

1. Hooks run last-registered first, each bounded; one that hangs or raises is logged by
   name, the others still run, the exit code is 5.
2. State kept in app[graceful.STATE] survives a restart.
3. A bad MODULE:ATTR exits 2 with one line and no traceback.
4. An on_startup that raises exits 1 and leaves the checkpoint as it was.
5. A stop while on_startup still runs abandons the start cleanly (exit 0).
6. An app that already routes /readyz is refused at start (exit 2).
7. A corrupted checkpoint is refused with its name; with PATH.prev the start falls back.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from graceful import checkpoint as ckpt
from tests.conftest import ROOT
from tests.rawhttp import get


async def test_hooks_run_in_reverse_order_bounded(serve, tmp_path):
    """1."""
    trace = tmp_path / "trace"
    server = serve("tests.apps:with_hooks", env={"TRACE_FILE": str(trace)})
    server.signal()
    assert await asyncio.to_thread(server.wait, 20) == 5
    assert trace.read_text().split() == ["on_shutdown", "d", "c", "b", "a", "on_cleanup"]
    assert server.wait_for("hook.timeout")["hook"].endswith("hook_b")
    assert server.wait_for("hook.failed")["hook"].endswith("hook_c")
    assert [name.rsplit(".", 1)[-1] for name in server.wait_for("hooks.done")["failed"]] == [
        "hook_c", "hook_b"]


async def test_state_survives_restart(serve, tmp_path):
    """2."""
    path = tmp_path / "state.json"
    first = serve("tests.apps:basic", "--checkpoint", str(path))
    for _ in range(3):
        await get(first.port, "/count")
    first.signal()
    assert await asyncio.to_thread(first.wait) == 0
    assert first.wait_for("checkpoint.flushed")["generation"] == 1
    second = serve("tests.apps:basic", "--checkpoint", str(path))
    restored = second.wait_for("checkpoint.restored")
    assert restored["generation"] == 1 and restored["age_s"] >= 0
    assert (await get(second.port, "/count")).body == b"4\n"
    second.signal()
    assert await asyncio.to_thread(second.wait) == 0
    assert ckpt.read(path).state["log"] == [1, 2, 3, 4]
    assert ckpt.read(ckpt.previous_path(path)).generation == 1


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "graceful", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=30)


@pytest.mark.parametrize(("target", "says"), [
    ("nocolon", "is not MODULE:ATTR"),
    ("tests.nowhere:app", "no module named 'tests.nowhere'"),
    ("tests.apps:missing", "has no attribute 'missing'"),
    ("tests.apps:not_an_app", "is an int, not an aiohttp Application"),
])
def test_bad_target_exits_2_with_one_line(target, says):
    """3."""
    result = _run_cli("serve", target, "--port", "0")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and says in result.stderr
    assert "Traceback" not in result.stderr


def test_factory_returning_wrong_type_exits_2():
    """3."""
    result = _run_cli("serve", "tests.apps:returns_wrong_type", "--port", "0",
                      "--log-format", "json")
    assert result.returncode == 2
    assert "returned str, not an aiohttp Application" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [
    ["--drain-timeout", "-1"], ["--loop", "tokio"], ["--log-format", "xml"],
    ["--port", "70000"], ["--checkpoint-interval", "5"],
])
def test_bad_options_exit_2(args):
    """3. Out-of-range options, and an interval without a checkpoint path."""
    result = _run_cli("serve", "tests.apps:basic", *args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


async def test_failing_startup_exits_1_and_keeps_checkpoint(serve, tmp_path):
    """4."""
    path = tmp_path / "state.json"
    ckpt.write_atomic(path, ckpt.encode({"kept": True}, 7))
    before = path.read_bytes()
    server = serve("tests.apps:failing_startup", "--checkpoint", str(path),
                   wait_started=False)
    assert await asyncio.to_thread(server.wait) == 1
    assert "database unreachable" in server.wait_for("startup.failed")["error"]
    assert path.read_bytes() == before


async def test_stop_during_startup_abandons_cleanly(serve):
    """5."""
    server = serve("tests.apps:slow_startup", wait_started=False)
    await asyncio.to_thread(server.wait_for, "raw")  # "slow_startup: waiting"
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    assert "start.abandoned" in server.names() and "server.started" not in server.names()


async def test_app_routing_readyz_is_refused(serve):
    """6."""
    server = serve("tests.apps:shadows_readyz", wait_started=False)
    assert await asyncio.to_thread(server.wait) == 2
    assert "already routes /readyz" in server.wait_for("process.failed")["error"]


async def test_corrupted_checkpoint_is_refused_or_falls_back(serve, tmp_path):
    """7."""
    path = tmp_path / "state.json"
    ckpt.write_atomic(path, ckpt.encode({"n": 1}, 1))
    ckpt.write_atomic(path, ckpt.encode({"n": 2}, 2))
    path.write_bytes(path.read_bytes().replace(b'"n":2', b'"n":3'))
    server = serve("tests.apps:basic", "--checkpoint", str(path))
    assert "checksum mismatch" in server.wait_for("checkpoint.fallback")["error"]
    assert server.wait_for("checkpoint.restored")["generation"] == 1
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0

    ckpt.previous_path(path).unlink()
    path.write_bytes(b'{"format": "graceful.checkpoint", "vers')
    broken = serve("tests.apps:basic", "--checkpoint", str(path), wait_started=False)
    assert await asyncio.to_thread(broken.wait) == 4
    error = broken.wait_for("process.failed")["error"]
    assert str(path) in error and "not valid JSON" in error
