"""State that survives a stop: a JSON mapping written atomically with a generation and checksum.

File layout (one JSON object):
    {"format": "graceful.checkpoint", "version": 1, "generation": N,
     "written_at": ISO-8601, "sha256": hex, "state": {...}}
`sha256` covers the canonical JSON of the other fields. The write goes to a temporary file
in the same folder (mode 0600), is fsynced, the current file is hard-linked to PATH.prev
(the fallback generation) and the new one is `os.replace`d over PATH, then the folder is
fsynced on POSIX. A kill at any instant leaves PATH holding a whole generation: the old one
or the new one, never a torn file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graceful.errors import CheckpointError

FORMAT = "graceful.checkpoint"
VERSION = 1


@dataclasses.dataclass(frozen=True)
class Snapshot:
    state: dict[str, Any]
    generation: int
    written_at: datetime.datetime
    path: Path

    def age_s(self) -> float:
        return (datetime.datetime.now(datetime.UTC) - self.written_at).total_seconds()


@dataclasses.dataclass(frozen=True)
class FlushResult:
    generation: int
    bytes: int
    took_ms: float


def previous_path(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def _canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def encode(state: Mapping[str, Any], generation: int) -> bytes:
    """The file's bytes for `state`. Call it on the loop: the snapshot is taken here."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "generation": generation,
        "written_at": datetime.datetime.now(datetime.UTC).isoformat(),
        "state": state,
    }
    try:
        body = _canonical(payload)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"state is not JSON: {err}") from err
    payload["sha256"] = hashlib.sha256(body).hexdigest()
    return _canonical(payload) + b"\n"


def decode(data: bytes, path: Path) -> Snapshot:
    """Parse and verify a checkpoint file's bytes; CheckpointError names what is wrong."""
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON (torn or corrupted file): {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a graceful checkpoint file")
    if payload.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported format version {payload.get('version')!r}")
    digest = payload.pop("sha256", None)
    if digest != hashlib.sha256(_canonical(payload)).hexdigest():
        raise CheckpointError(f"{path}: checksum mismatch (file was altered or torn)")
    state, generation = payload.get("state"), payload.get("generation")
    if not isinstance(state, dict) or not isinstance(generation, int):
        raise CheckpointError(f"{path}: malformed state or generation")
    try:
        written_at = datetime.datetime.fromisoformat(payload["written_at"])
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: malformed written_at") from err
    return Snapshot(state, generation, written_at, path)


def read(path: Path) -> Snapshot:
    """Read and verify one checkpoint file."""
    _refuse_symlink(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as err:
        raise CheckpointError(f"{path}: no such file") from err
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read: {err.strerror}") from err
    return decode(data, path)


def load(path: Path) -> tuple[Snapshot | None, CheckpointError | None]:
    """The newest valid generation at `path`, falling back to PATH.prev.

    Returns (None, None) when neither file exists (a first start), and (snapshot, error)
    when PATH was bad and PATH.prev was used. Raises when nothing valid can be had.
    """
    prev = previous_path(path)
    if not path.exists() and not path.is_symlink():
        if not prev.exists():
            return None, None
        return read(prev), CheckpointError(f"{path}: missing, using {prev.name}")
    try:
        return read(path), None
    except CheckpointError as err:
        if not prev.exists():
            raise
        return read(prev), err


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` atomically, keeping the current file as PATH.prev."""
    _refuse_symlink(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_NOFOLLOW | _O_BINARY, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.exists():
            _keep_previous(path)
        os.replace(tmp, path)
        _fsync_folder(path.parent)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CheckpointError(f"cannot write checkpoint {path}: {err.strerror or err}") from err


def _keep_previous(path: Path) -> None:
    prev = previous_path(path)
    link_tmp = path.with_name(f".{prev.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link_tmp)
    os.link(path, link_tmp)
    os.replace(link_tmp, prev)


def _refuse_symlink(path: Path) -> None:
    # Following a link could write outside the folder the operator chose.
    if path.is_symlink():
        raise CheckpointError(f"{path}: is a symbolic link; refusing to follow it")


_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":
        return  # Windows has no directory fsync; NTFS journals the rename.
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Checkpointer:
    """Writes generations of one state mapping to one path, one write at a time."""

    def __init__(self, path: Path, state: dict[str, Any], generation: int = 0) -> None:
        self.path = path
        self.state = state
        self.generation = generation
        self._lock = asyncio.Lock()
        self._last_written: bytes | None = None

    async def flush(self, *, only_if_changed: bool = False) -> FlushResult | None:
        """Snapshot the state now, on the loop, and write it in a worker thread.

        With `only_if_changed`, a state equal to the last one written is not written again.
        """
        async with self._lock:
            started = time.perf_counter()
            data = encode(self.state, self.generation + 1)
            body = _canonical(self.state)  # encode() already proved it is JSON
            if only_if_changed and body == self._last_written:
                return None
            await asyncio.to_thread(write_atomic, self.path, data)
            self.generation += 1
            self._last_written = body
            return FlushResult(self.generation, len(data), (time.perf_counter() - started) * 1e3)

    def flush_now(self) -> FlushResult:
        """The same write, blocking the loop: for the abandon path, when nothing can wait."""
        started = time.perf_counter()
        data = encode(self.state, self.generation + 1)
        write_atomic(self.path, data)
        self.generation += 1
        return FlushResult(self.generation, len(data), (time.perf_counter() - started) * 1e3)
