"""The checkpoint file: one JSON object with a format version, a generation and a checksum.

    {"format": "graceful.checkpoint", "generation": N, "sha256": hex, "state": {...},
     "version": 1, "written_at": ISO-8601}

`sha256` covers the canonical JSON (sorted keys, no spaces, UTF-8) of the other fields.
The canonical form is built from one JSON fragment per top-level key of the state, so that
a tick serialises the state once and the checksum is computed off the loop (`assemble`).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graceful.errors import CheckpointError

FORMAT = "graceful.checkpoint"
VERSION = 1
HEADER = re.compile(rb'\{"format":"graceful\.checkpoint","generation":(\d+),')


@dataclasses.dataclass(frozen=True)
class Snapshot:
    state: dict[str, Any]
    generation: int
    written_at: datetime.datetime
    path: Path

    def age_s(self) -> float:
        return (datetime.datetime.now(datetime.UTC) - self.written_at).total_seconds()


def previous_path(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def dumps(value: Any) -> str:
    """The canonical JSON of `value` (raises TypeError/ValueError when it has none)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def _canonical(payload: Mapping[str, Any]) -> bytes:
    return dumps(payload).encode()


def assemble(fragments: Mapping[str, str], generation: int,
             written_at: str | None = None) -> list[bytes]:
    """The file's bytes, in pieces, from the canonical JSON of each top-level value:
    byte for byte what `encode` gives for the same state. Call it off the loop."""
    written_at = written_at or datetime.datetime.now(datetime.UTC).isoformat()
    state: list[bytes] = [b"{"]
    for index, key in enumerate(sorted(fragments)):
        state += [b"," if index else b"", dumps(key).encode(), b":",
                  fragments[key].encode()]
    state.append(b"}")
    head = f'{{"format":"{FORMAT}","generation":{generation},'.encode()
    tail = f',"version":{VERSION},"written_at":{dumps(written_at)}}}'.encode()
    digest = hashlib.sha256(head)
    digest.update(b'"state":')
    for piece in state:
        digest.update(piece)
    digest.update(tail)
    return [head, f'"sha256":"{digest.hexdigest()}","state":'.encode(), *state, tail + b"\n"]


def encode(state: Mapping[str, Any], generation: int) -> bytes:
    """The file's bytes for `state` (a whole file at once: tests and tools)."""
    if any(type(key) is not str for key in state):
        raise CheckpointError("state is not JSON: its keys must be strings")
    try:
        fragments = {key: dumps(value) for key, value in state.items()}
        return b"".join(assemble(fragments, generation))
    except (TypeError, ValueError, AttributeError, UnicodeEncodeError) as err:
        raise CheckpointError(f"state is not JSON: {err}") from err


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


def generation_in(head: bytes) -> int | None:
    """The generation named by a file's first bytes (None if it is not a checkpoint)."""
    match = HEADER.match(head)
    return int(match.group(1)) if match else None


def read(path: Path) -> Snapshot:
    """Read and verify one checkpoint file."""
    refuse_symlink(path)
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


def refuse_symlink(path: Path) -> None:
    # Following a link could write outside the folder the operator chose.
    if path.is_symlink():
        raise CheckpointError(f"{path}: is a symbolic link; refusing to follow it")
