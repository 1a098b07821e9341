"""Checkpoint files: atomic writes, verification, fallback, failures, the CLI.

1. A state written is read back whole, with its generation; PATH.prev holds the one before.
2. A torn, tampered or foreign file is refused with a one-line reason naming the file.
3. A write that fails (disk full) leaves the old file intact and no temp file behind.
4. A symbolic link is refused, never followed; files are created with mode 0600.
5. Non-JSON state is refused with the reason.
6. `graceful checkpoint verify/show` exit 0/1 with one line.
7. kill -9 at random instants during rapid checkpointing never leaves a torn or older file.
8. The file assembled from per-key fragments is the canonical version-1 file.
9. A flush that holds the loop (no fork: Windows) says so: `checkpoint.slow` with the
   state's size and the time, once a minute at most while serving, and at the stop.
10. In a forked child: the same generations as on the loop (unchanged keys not sent back,
    the bad values named, a key that keeps its last written value), with the loop held for
    the fork alone.
11. Messages read as sentences: "key 42 is an int".
12. A file rewritten by someone else: what it holds now, and the generation written last.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time

import pytest

from graceful import checkpoint as ckpt
from graceful.errors import CheckpointError
from tests.conftest import ROOT, ServerProcess


def test_roundtrip_and_previous_generation(tmp_path):
    """1."""
    path = tmp_path / "s.json"
    ckpt.write_atomic(path, ckpt.encode({"a": [1, 2], "b": "é"}, 1))
    ckpt.write_atomic(path, ckpt.encode({"a": [3]}, 2))
    assert ckpt.read(path).state == {"a": [3]} and ckpt.read(path).generation == 2
    assert ckpt.read(ckpt.previous_path(path)).state == {"a": [1, 2], "b": "é"}
    assert ckpt.load(path) == (ckpt.read(path), None)
    assert ckpt.load(tmp_path / "none.json") == (None, None)


@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda b: b[: len(b) // 2], "not valid JSON"),
    (lambda b: b.replace(b'"a":[3]', b'"a":[4]'), "checksum mismatch"),
    (lambda b: b'{"hello": 1}', "not a graceful checkpoint"),
    (lambda b: b.replace(b'"version":1', b'"version":9'), "unsupported format version"),
])
def test_bad_files_are_refused_with_reason(tmp_path, mangle, reason):
    """2."""
    path = tmp_path / "s.json"
    ckpt.write_atomic(path, ckpt.encode({"a": [3]}, 2))
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(CheckpointError, match=reason) as caught:
        ckpt.read(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_failed_write_leaves_old_file(tmp_path, monkeypatch):
    """3. The fault is injected at the write call: ENOSPC half way through."""
    path = tmp_path / "s.json"
    ckpt.write_atomic(path, ckpt.encode({"old": True}, 1))
    before = path.read_bytes()
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        if len(data) > 10:
            real_write(fd, bytes(data[:10]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device"):
        ckpt.write_atomic(path, ckpt.encode({"new": "x" * 100}, 2))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]  # no temp file left


def test_symlink_refused_and_mode_0600(tmp_path):
    """4."""
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(outside)
    with pytest.raises(CheckpointError, match="symbolic link"):
        ckpt.write_atomic(link, ckpt.encode({}, 1))
    with pytest.raises(CheckpointError, match="symbolic link"):
        ckpt.read(link)
    assert outside.read_text() == "{}"
    path = tmp_path / "s.json"
    ckpt.write_atomic(path, ckpt.encode({}, 1))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_non_json_state_refused():
    """5."""
    with pytest.raises(CheckpointError, match="not JSON"):
        ckpt.encode({"when": object()}, 1)
    with pytest.raises(CheckpointError, match="not JSON"):
        ckpt.encode({"x": float("nan")}, 1)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "graceful", "checkpoint", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


def test_cli_verify_and_show(tmp_path):
    """6."""
    path = tmp_path / "s.json"
    ckpt.write_atomic(path, ckpt.encode({"k": 1}, 3))
    ok = _cli("verify", str(path))
    assert ok.returncode == 0 and "generation 3" in ok.stdout
    shown = _cli("show", str(path))
    assert shown.returncode == 0 and '"k": 1' in shown.stdout
    path.write_bytes(path.read_bytes()[:-20])
    for args in (["verify", str(path)], ["verify", str(tmp_path / "missing")],
                 ["show", str(path)]):
        bad = _cli(*args)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr


async def test_kill_9_during_rapid_checkpointing(tmp_path):
    """7. 15 rounds: load the server, SIGKILL at a random instant, check the file."""
    import asyncio

    from tests.rawhttp import Connection

    path = tmp_path / "s.json"
    last_generation = 0
    rng = random.Random(1234)
    for _ in range(15):
        server = ServerProcess("tests.apps:basic", "--checkpoint", str(path),
                               "--checkpoint-interval", "0.005")
        try:
            server.started()
            conn = await Connection.open(server.port)
            until = time.monotonic() + rng.uniform(0.05, 0.4)
            while time.monotonic() < until:
                await conn.request("GET", "/count")
            os.kill(server.proc.pid, signal.SIGKILL)
            await asyncio.to_thread(server.wait)
            conn.close()
        finally:
            server.kill()
        snapshot = ckpt.read(path)  # raises on a torn file
        assert snapshot.generation >= last_generation
        assert snapshot.state.get("log", []) == list(range(1, snapshot.state.get("count", 0) + 1))
        last_generation = snapshot.generation
    assert last_generation > 15


def test_fragments_assemble_to_the_canonical_file(tmp_path):
    """8. The file built from one JSON fragment per key is byte for byte the canonical
    file of version 1 (files written before keep verifying, and the other way round)."""
    import hashlib
    import json

    from graceful.checkpoint import fileformat

    state = {"b": [1, 2.5, None], "a": {"z": "é", "y": True}, "": 10**30}
    when = "2026-01-01T00:00:00+00:00"
    pieces = fileformat.assemble({k: fileformat.dumps(v) for k, v in state.items()}, 7, when)

    def canonical(payload: dict) -> bytes:
        return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode()

    payload = {"format": ckpt.FORMAT, "version": 1, "generation": 7, "written_at": when,
               "state": state}
    payload["sha256"] = hashlib.sha256(canonical(payload)).hexdigest()
    assert b"".join(pieces) == canonical(payload) + b"\n"
    path = tmp_path / "s.json"
    ckpt.write_atomic(path, pieces)
    assert ckpt.read(path).state == state and ckpt.read(path).generation == 7


def _big_state(megabytes: float) -> dict:
    return {"users": {f"user{i:07d}": {"name": "x" * 20, "n": i} for i in
                      range(int(megabytes * 1e6 / 50))}}


async def test_a_flush_that_holds_the_loop_says_so(tmp_path):
    """9."""
    from structlog.testing import capture_logs

    from graceful.lifecycle.flushing import SLOW_LOOP_MS, Flusher

    path = tmp_path / "s.json"
    checkpointer = ckpt.Checkpointer(path, ckpt.CheckpointLock.acquire(path), off_loop=False)
    checkpointer.state.update(_big_state(10))
    flusher = Flusher(checkpointer, None)
    with capture_logs() as logs:
        assert await flusher.final(60) == 0
    [slow] = [e for e in logs if e["event"] == "checkpoint.slow"]
    assert slow["log_level"] == "warning" and slow["final"] is True
    assert slow["loop_ms"] >= SLOW_LOOP_MS
    users = ckpt.read(path).state["users"]
    assert slow["state_bytes"] == len(json.dumps(users, sort_keys=True, separators=(",", ":")))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="a forked child serialises where fork is")
async def test_a_forked_snapshot_writes_what_the_loop_would(tmp_path):
    """10."""
    results = {}
    for off_loop in (False, True):
        path = tmp_path / f"{off_loop}.json"
        checkpointer = ckpt.Checkpointer(path, ckpt.CheckpointLock.acquire(path),
                                         off_loop=off_loop)
        checkpointer.state.update(_big_state(1), hits=1, when="now")
        first = await checkpointer.flush()
        same = await checkpointer.flush(only_if_changed=True)
        checkpointer.state.update(hits=2, when=object())  # hits changes; when cannot be kept
        checkpointer.state[42] = "an int key"
        last = await checkpointer.flush(only_if_changed=True)
        checkpointer.close()
        results[off_loop] = (first.generation, same.written, last.generation,
                             sorted(p.path for p in last.invalid), ckpt.read(path).state)
        assert last.state_bytes > 1_000_000
    assert results[True] == results[False]
    generations, unchanged_written, last_generation, invalid, state = results[True]
    assert (generations, unchanged_written, last_generation) == (1, False, 2)
    assert invalid == ['state["when"]', "state[42]"]
    assert state["hits"] == 2 and state["when"] == "now"


def test_messages_read_as_sentences():
    """11. A key of the wrong type says its type with its article."""
    from graceful.checkpoint import values

    problem = values.check_item(42, "x", strings=False)[0]
    assert "key 42 is an int: JSON keys are strings" in problem.error


@pytest.mark.parametrize(("content", "holds"), [
    (b"not a checkpoint\n", "it now holds something that is not a checkpoint;"),
    (ckpt.encode({"b": 2}, 7), "it now holds generation 7;"),
])
async def test_a_file_rewritten_by_someone_else_is_named(tmp_path, content, holds):
    """12. A checkpoint rewritten behind the writer's back: it says what the file holds now
    and which generation it wrote last."""
    from graceful.checkpoint.checkpointer import Checkpointer

    path = tmp_path / "state.json"
    keeper = Checkpointer.open(path)
    try:
        keeper.state["a"] = 1
        await keeper.flush()
        path.write_bytes(content)
        keeper.state["a"] = 2
        with pytest.raises(CheckpointError) as caught:
            await keeper.flush()
        assert holds in str(caught.value) and "wrote generation 1 last" in str(caught.value)
    finally:
        keeper.close()
