"""The checkpoint while serving and at the stop: periodic flushes, the final flush in its
reserved time, and the best-effort flush of an abandoned stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from graceful.errors import CheckpointError, ExitCode
from graceful.logs import get_logger

if TYPE_CHECKING:  # a server without a checkpoint does not import it at start
    from graceful import checkpoint as ckpt

log = get_logger()

# A flush that holds the loop this long delays every request due meanwhile: the budget of
# the whole drain's overhead. Said once a minute at most while it lasts.
SLOW_LOOP_MS = 20.0
SLOW_EVERY_S = 60.0


class Flusher:
    def __init__(self, checkpointer: ckpt.Checkpointer | None, interval: float | None, *,
                 on_flushed: Callable[[ckpt.FlushResult], None] | None = None) -> None:
        self._checkpointer = checkpointer
        self._interval = interval
        # told of each generation written (the metrics' observer, graceful/metrics/endpoint.py)
        self._on_flushed = on_flushed or (lambda result: None)
        self._periodic: asyncio.Task[None] | None = None
        self._slow_said_at: float | None = None
        self._slow_since = 0  # slow flushes not said yet

    def start(self) -> None:
        """Flush every `interval` seconds while serving (when the state changed)."""
        if self._checkpointer is not None and self._interval:
            self._periodic = asyncio.create_task(self._flush_periodically(self._checkpointer,
                                                                          self._interval))

    async def final(self, timeout: float) -> ExitCode:
        """The flush at the end of the stop, bounded by `timeout`."""
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
        checkpointer = self._checkpointer
        if checkpointer is None or checkpointer.closed:  # closed: abandoned
            return ExitCode.OK
        try:
            async with asyncio.timeout(timeout):
                # waits for a periodic write still in progress on the writer thread first
                result = await checkpointer.flush()
        except (CheckpointError, TimeoutError) as err:
            log.error("checkpoint.failed", path=str(checkpointer.path),
                      error=str(err) or f"timed out after {timeout:.3g}s")
            return ExitCode.CHECKPOINT_FAILED
        finally:
            checkpointer.close()
        log_invalid(result.invalid, final=True)
        self._say_if_slow(result, final=True)
        log.info("checkpoint.flushed", path=str(checkpointer.path),
                 generation=result.generation, bytes=result.bytes, took_ms=round(result.took_ms, 2))
        self._on_flushed(result)
        # the good keys are written; the bad ones' new values are lost
        return ExitCode.CHECKPOINT_FAILED if result.invalid else ExitCode.OK

    def abandon(self, timeout: float) -> ExitCode:
        """Third stop: write what we can now, on the loop."""
        code = ExitCode.DRAIN_DEADLINE
        checkpointer = self._checkpointer
        if checkpointer is None:
            return code
        try:
            result = checkpointer.flush_now(timeout)
            log_invalid(result.invalid, final=True)
            log.info("checkpoint.flushed", path=str(checkpointer.path),
                     generation=result.generation, bytes=result.bytes,
                     took_ms=round(result.took_ms, 2), abandoned=True)
            self._on_flushed(result)
            if result.invalid:
                code = ExitCode.CHECKPOINT_FAILED
        except CheckpointError as err:
            log.error("checkpoint.failed", error=str(err), abandoned=True)
            code = ExitCode.CHECKPOINT_FAILED
        checkpointer.close()
        return code

    async def _flush_periodically(self, checkpointer: ckpt.Checkpointer,
                                  interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            if checkpointer.closed:  # the third stop wrote it and left
                return
            try:
                result = await checkpointer.flush(only_if_changed=True)
            except CheckpointError as err:
                log.error("checkpoint.failed", error=str(err), periodic=True)
                continue
            log_invalid(result.fresh)
            self._say_if_slow(result)
            if result.written:
                log.debug("checkpoint.flushed", generation=result.generation,
                          bytes=result.bytes, took_ms=round(result.took_ms, 2), periodic=True)
                self._on_flushed(result)


    def _say_if_slow(self, result: ckpt.FlushResult, *, final: bool = False) -> None:
        """`checkpoint.slow` when the flush held the loop SLOW_LOOP_MS or more: the size of
        the state and the time, so that the cost of a large state is seen where it is paid."""
        if result.loop_ms < SLOW_LOOP_MS:
            return
        self._slow_since += 1
        now = time.monotonic()
        if not final and self._slow_said_at is not None and now - self._slow_said_at < SLOW_EVERY_S:
            return
        log.warning("checkpoint.slow", state_bytes=result.state_bytes,
                    loop_ms=round(result.loop_ms, 1), took_ms=round(result.took_ms, 1),
                    written=result.written, flushes=self._slow_since, final=final)
        self._slow_said_at, self._slow_since = now, 0


def log_invalid(problems: Iterable[ckpt.Problem], *, final: bool = False) -> None:
    """A value the file cannot keep: named while it can still be fixed."""
    for problem in problems:
        log.warning("checkpoint.invalid", path=problem.path, error=problem.error, final=final)
