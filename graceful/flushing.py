"""The checkpoint while serving and at the stop: periodic flushes, the final flush in its
reserved time, and the best-effort flush of an abandoned stop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from graceful import checkpoint as ckpt
from graceful.errors import CheckpointError, ExitCode
from graceful.logs import get_logger

log = get_logger()


class Flusher:
    def __init__(self, checkpointer: ckpt.Checkpointer | None, interval: float | None) -> None:
        self._checkpointer = checkpointer
        self._interval = interval
        self._periodic: asyncio.Task[None] | None = None

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
        log.info("checkpoint.flushed", path=str(checkpointer.path),
                 generation=result.generation, bytes=result.bytes, took_ms=round(result.took_ms, 2))
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
            if result.invalid:
                code = ExitCode.CHECKPOINT_FAILED
        except CheckpointError as err:
            log.error("checkpoint.failed", error=str(err), abandoned=True)
            code = ExitCode.CHECKPOINT_FAILED
        checkpointer.close()
        return code

    @staticmethod
    async def _flush_periodically(checkpointer: ckpt.Checkpointer, interval: float) -> None:
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
            if result.written:
                log.debug("checkpoint.flushed", generation=result.generation,
                          bytes=result.bytes, took_ms=round(result.took_ms, 2), periodic=True)


def log_invalid(problems: Iterable[ckpt.Problem], *, final: bool = False) -> None:
    """A value the file cannot keep: named while it can still be fixed."""
    for problem in problems:
        log.warning("checkpoint.invalid", path=problem.path, error=problem.error, final=final)
