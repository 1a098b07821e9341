"""Generations of one state dict written to one path: one writer, a cheap unchanged check.

A flush takes its snapshot on the loop, between two callbacks, so it is consistent. Where
the platform can fork (forked.py) the snapshot is a forked child: it serialises the state
(one json.dumps per top-level key, the C encoder) and checks the values while the loop
serves on, and answers with the JSON of the keys that changed since the last write only.
Elsewhere (Windows, or when a fork fails) the same serialisation runs on the loop. The
checksum, the encoding and the write run on one writer thread, one write at a time and in
order: a flush waits for the write in progress (a periodic one the stop has cancelled
included) before taking its snapshot. A key whose value the file cannot keep
(graceful/checkpoint/values.py) keeps its last written value; the other keys are written.
A key whose JSON is the one last written is not examined further.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import os
import pickle
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graceful.checkpoint import fileformat, forked, lock, values, writer
from graceful.errors import CheckpointError

_Identity = tuple[int, int, int, int] | None


@dataclasses.dataclass(frozen=True)
class FlushResult:
    generation: int
    bytes: int
    took_ms: float
    written: bool = True
    # Values not saved as they are now (their key keeps its last written value, if any);
    # `fresh` are those not reported by an earlier flush.
    invalid: tuple[values.Problem, ...] = ()
    fresh: tuple[values.Problem, ...] = ()
    # How long the loop was held (the fork, or the whole serialisation where there is no
    # fork), and the size of the state's JSON whether or not it was written.
    loop_ms: float = 0.0
    state_bytes: int = 0


@dataclasses.dataclass(frozen=True)
class _Serialised:
    """The state's JSON by top-level key: `same` are the keys whose JSON is the one last
    written, `changed` the JSON of the others that the file can keep."""

    same: tuple[str, ...]
    changed: dict[str, str]
    invalid: tuple[values.Problem, ...]


@dataclasses.dataclass(frozen=True)
class _Snapshot:
    fragments: dict[str, str]
    invalid: tuple[values.Problem, ...]
    unchanged: bool
    started: float
    loop_ms: float


class Checkpointer:
    """Owns the checkpoint at `path` for the life of the process (see `open`)."""

    def __init__(self, path: Path, held: lock.CheckpointLock,
                 restored: fileformat.Snapshot | None = None,
                 fallback: CheckpointError | None = None, *,
                 off_loop: bool | None = None) -> None:
        """`off_loop`: serialise in a forked child (None: where the platform can)."""
        self.path = path
        self.restored = restored
        self.fallback = fallback
        self.state: dict[str, Any] = {}
        self.generation = restored.generation if restored else 0
        self._lock = held
        state = restored.state if restored else {}
        self._written = {key: fileformat.dumps(value) for key, value in state.items()}
        self._reported: set[values.Problem] = set()
        self._off_loop = forked.available() if off_loop is None else off_loop
        self._on_disk = _identity(path)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, "graceful-checkpoint")
        self._pending: concurrent.futures.Future[FlushResult] | None = None
        self._closed = False

    @classmethod
    def open(cls, path: Path, *, handed_over_lock_fd: int | None = None) -> Checkpointer:
        """Probe the folder, take the lock, then read the newest valid generation.
        Raises CheckpointError (exit 4) when any of them fails."""
        fileformat.refuse_symlink(path)
        writer.probe_folder(path)
        held = lock.CheckpointLock.acquire(path, handed_over_fd=handed_over_lock_fd)
        try:
            restored, fallback = fileformat.load(path)
        except BaseException:
            held.release()
            raise
        return cls(path, held, restored, fallback)

    @property
    def lock_fd(self) -> int:
        """The descriptor holding PATH.lock."""
        return self._lock.fd

    def reload(self) -> fileformat.Snapshot | None:
        """Read the newest valid generation again and write on from it: for the new worker of
        a restart, once the old one has written its final state (graceful/lifecycle/worker_link.py).
        Raises CheckpointError as `open` does."""
        restored, fallback = fileformat.load(self.path)
        self.restored, self.fallback = restored, fallback
        self.generation = restored.generation if restored else 0
        state = restored.state if restored else {}
        self._written = {key: fileformat.dumps(value) for key, value in state.items()}
        self._on_disk = _identity(self.path)
        return restored

    def check(self) -> list[values.Problem]:
        """The values of the state the checkpoint cannot keep (a full walk); the next
        periodic flush does not report them again."""
        problems = [problem for key, value in self.state.items()
                    for problem in values.check_item(key, value, strings=True)]
        self._reported = set(problems)
        return problems

    async def flush(self, *, only_if_changed: bool = False) -> FlushResult:
        """Snapshot the state now, on the loop (a fork where it can), and write it on the
        writer thread.

        Waits first for a write in progress. With `only_if_changed`, a state whose JSON is
        the one last written is not written again (`written` is False).
        """
        self._check_open()
        pending = self._pending
        if pending is not None and not pending.done():
            await asyncio.wait([asyncio.wrap_future(pending)])
        started, written = time.perf_counter(), self._written
        child = None
        if self._off_loop:
            with contextlib.suppress(OSError):  # no fork now (memory, process limit)
                child = forked.start(functools.partial(_serialise_portable, self.state,
                                                       written))
        if child is not None:
            loop_ms = (time.perf_counter() - started) * 1e3
            self._pending = self._pool.submit(self._finish, child, written, started, loop_ms,
                                              only_if_changed)
            return await asyncio.wrap_future(self._pending)
        snapshot = self._snapshot(_serialise(self.state, written), written, started,
                                  (time.perf_counter() - started) * 1e3)
        if only_if_changed and snapshot.unchanged:
            return self._result(snapshot, 0, written=False)
        self._pending = self._pool.submit(self._write, snapshot)
        return await asyncio.wrap_future(self._pending)

    def flush_now(self, timeout: float) -> FlushResult:
        """The same write, blocking the loop up to `timeout` seconds: for the abandon path."""
        self._check_open()
        deadline = time.monotonic() + timeout
        pending = self._pending
        if pending is not None and not pending.done():
            concurrent.futures.wait([pending], timeout)
        started, written = time.perf_counter(), self._written
        snapshot = self._snapshot(_serialise(self.state, written), written, started,
                                  (time.perf_counter() - started) * 1e3)
        self._pending = self._pool.submit(self._write, snapshot)
        try:
            return self._pending.result(max(deadline - time.monotonic(), 0))
        except concurrent.futures.TimeoutError:
            raise CheckpointError(f"{self.path}: not written after {timeout:.3g}s") from None

    def close(self) -> None:
        """Let the writer finish, then give the lock back."""
        self._closed = True
        self._pool.shutdown(wait=False)
        pending = self._pending
        if pending is not None and not pending.done():
            pending.add_done_callback(lambda _: self._lock.release())
        else:
            self._lock.release()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise CheckpointError(f"{self.path}: the checkpoint is closed (final flush done)")

    # -- on the loop or the writer thread ---------------------------------------------------

    def _snapshot(self, serialised: _Serialised, written: Mapping[str, str], started: float,
                  loop_ms: float) -> _Snapshot:
        """The file's fragments: `written` for the keys that did not change (and for those
        whose new value the file cannot keep), the new JSON for the others."""
        fragments = {key: written[key] for key in serialised.same}
        fragments.update(serialised.changed)
        for problem in serialised.invalid:
            kept = written.get(problem.key) if type(problem.key) is str else None
            if kept is not None and problem.key not in fragments:
                fragments[problem.key] = kept
        return _Snapshot(fragments, serialised.invalid, fragments == written, started, loop_ms)

    def _result(self, snapshot: _Snapshot, size: int, *, written: bool) -> FlushResult:
        fresh = tuple(p for p in snapshot.invalid if p not in self._reported)
        self._reported = set(snapshot.invalid)
        return FlushResult(self.generation, size, (time.perf_counter() - snapshot.started) * 1e3,
                           written, snapshot.invalid, fresh, snapshot.loop_ms,
                           sum(len(text) for text in snapshot.fragments.values()))

    # -- on the writer thread --------------------------------------------------------------

    def _finish(self, child: forked.Child, written: Mapping[str, str], started: float,
                loop_ms: float, only_if_changed: bool) -> FlushResult:
        try:
            serialised = child.result()
        except forked.ChildFailed as err:
            raise CheckpointError(f"{self.path}: the snapshot failed: {err}") from None
        snapshot = self._snapshot(serialised, written, started, loop_ms)
        if only_if_changed and snapshot.unchanged:
            return self._result(snapshot, 0, written=False)
        return self._write(snapshot)

    def _write(self, snapshot: _Snapshot) -> FlushResult:
        on_disk = _identity(self.path)
        if on_disk is not None and on_disk != self._on_disk:
            raise CheckpointError(
                f"{self.path} was rewritten by someone else (it now holds "
                f"{_generation_at(self.path)}; this process wrote generation {self.generation} "
                "last): not overwriting it")
        generation = self.generation + 1
        size = writer.write_atomic(self.path, fileformat.assemble(snapshot.fragments, generation))
        self._on_disk = _identity(self.path)
        self.generation = generation
        self._written = snapshot.fragments
        return self._result(snapshot, size, written=True)


def _serialise(state: Mapping[Any, Any], written: Mapping[str, str]) -> _Serialised:
    """One json.dumps per top-level key; the values of a key whose JSON changed are checked
    (values.py). Runs in the forked child, or on the loop."""
    same: list[str] = []
    changed: dict[str, str] = {}
    invalid: list[values.Problem] = []
    for key, value in state.items():
        if type(key) is not str:
            invalid += values.check_item(key, value, strings=True)
            continue
        try:
            text = fileformat.dumps(value)
        except (TypeError, ValueError, RecursionError) as err:
            invalid += (values.check_item(key, value, strings=True)
                        or [values.Problem(key, values.path_of(key), str(err))])
            continue
        if text == written.get(key):
            same.append(key)
            continue
        problems = values.check_item(key, value, strings=not text.isascii())
        if problems:
            invalid += problems
        else:
            changed[key] = text
    return _Serialised(tuple(same), changed, tuple(invalid))


def _serialise_portable(state: Mapping[Any, Any], written: Mapping[str, str]) -> _Serialised:
    """`_serialise`, its answer fit to cross the pipe: a key that pickle cannot carry (an
    object used as a key) is named by its repr."""
    serialised = _serialise(state, written)
    invalid = tuple(problem if _picklable(problem.key)
                    else dataclasses.replace(problem, key=repr(problem.key))
                    for problem in serialised.invalid)
    return dataclasses.replace(serialised, invalid=invalid)


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def _identity(path: Path) -> _Identity:
    try:
        info = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def _generation_at(path: Path) -> str:
    """What the file at `path` holds, said for a message."""
    with contextlib.suppress(OSError), path.open("rb") as f:
        found = fileformat.generation_in(f.read(128))
        return f"generation {found}" if found is not None else "something that is not a checkpoint"
    return "a file this process cannot read"
