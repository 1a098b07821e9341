"""One worker seen from the supervisor: its ready pipe, its output, its exit.

Its ready pipe is read for its life: "ready" (and "serving"), then what became of each pause
and continue it was told (pausing.py).

Its stdout and stderr are pipes that the supervisor reads and forwards whole line by whole
line (lines of several workers never interleave), keeping the last lines for
`worker.exited`. The pipes stay the supervisor's own: a process the worker started keeps
writing into them after the worker has gone, and nothing it writes breaks (no SIGPIPE).
Its exit comes from the supervisor's reaper (platform.py), not from the pipes closing.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Callable

from graceful.supervisor import platform
from graceful.supervisor.output import output
from graceful.supervisor.spawn import Spawned

# whole lines of a worker's output, where they go: (lines, "stdout" or "stderr", its pid)
Output = Callable[[bytes, str, int], None]

LOG_TAIL = 20  # lines of a worker's output repeated when it exits unexpectedly
# Output with no newline is forwarded once it reaches this much, not kept whole: a worker
# writing megabytes without one would grow the supervisor's memory without bound.
LONGEST_LINE = 64 * 1024
# Windows: how long after a worker's exit its output threads get to deliver its last lines.
OUTPUT_AFTER_EXIT_S = 0.5


class WorkerProcess:
    """A spawned worker: `ready` resolves True once it serves (False if it exited first),
    `exited` with its exit code (negative: the signal that ended it)."""

    def __init__(self, spawned: Spawned, number: int, generation: int,
                 gated: bool = False, output: Output | None = None) -> None:
        self.pid = spawned.pid
        self.number = number  # its slot, 1..N, kept by its replacements
        self.generation = generation  # the restart that started it (0: the first start)
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.ready: asyncio.Future[bool] = loop.create_future()
        # `ready` is "built, serving" except for a gated worker (the new one of a restart
        # with a checkpoint), which says "ready" before accepting and "serving" once it has
        # taken the state over and accepts
        self.gated = gated
        self.serving: asyncio.Future[bool] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()
        self.started_at = loop.time()
        self.stopping = False  # the supervisor asked it to stop: its exit is expected
        self.handoff = spawned.handoff  # POSIX: where its hand-off channels go (handoff.py)
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL)
        self._partial: dict[int, bytes] = {}
        self._ready: platform.PipeWatch | None = None
        # ours: where its lines go (our stdout and stderr, or `output`: a service's log)
        self._targets: dict[int, int | Callable[[bytes], None]] = {
            spawned.stdout_fd: 1 if output is None
            else functools.partial(output, stream="stdout", pid=self.pid),
            spawned.stderr_fd: 2 if output is None
            else functools.partial(output, stream="stderr", pid=self.pid)}
        self._outputs: dict[int, platform.PipeWatch] = {}
        self._exiting: asyncio.Future[None] | None = None
        self.on_report: Callable[[int, str], None] | None = None  # a line after ready
        self._ready_partial = b""
        # what was read and forwarded before the loop ran (start.py)
        self._tail.extend(spawned.tail)
        self._partial.update(spawned.partial)
        for fd in list(self._targets):
            self._outputs[fd] = platform.watch_pipe(loop, fd, functools.partial(self._take, fd))
        if spawned.ready_seen:  # never gated: the first start
            self.ready.set_result(True)
            self.serving.set_result(True)
        self._ready = platform.watch_pipe(loop, spawned.ready_fd, self._on_ready_pipe, 64)

    def __repr__(self) -> str:
        return f"<worker {self.number} pid {self.pid}>"

    def signal(self, order: int, source: str = "") -> None:
        """Give it an order (orders.py): a signal on POSIX, a word on its pipe on Windows
        (with the stop's `source`, which the worker logs as its own)."""
        platform.tell(self.pid, order, source)

    def kill_group(self) -> None:
        """End it at once, and on POSIX what it started that is still there (its group)."""
        platform.kill_group(self.pid)

    def exit_seen(self, code: int) -> None:
        """The reaper's report (code as os.waitstatus_to_exitcode gives it)."""
        for said in (self.ready, self.serving):
            if not said.done():
                said.set_result(False)
        self._close_ready()
        if self.handoff is not None:
            self.handoff.close()
        # what it wrote last is in the pipes: read it now, for last_lines()
        for watch in list(self._outputs.values()):
            watch.finish()
        if self._outputs and platform.WINDOWS:  # their threads deliver it: a moment more
            self._exiting = asyncio.ensure_future(self._exited_after_output(code))
        elif not self.exited.done():
            self.exited.set_result(code)

    async def _exited_after_output(self, code: int) -> None:
        deadline = self._loop.time() + OUTPUT_AFTER_EXIT_S
        while self._outputs and self._loop.time() < deadline:
            await asyncio.sleep(0.02)
        if not self.exited.done():
            self.exited.set_result(code)

    def last_lines(self) -> list[str]:
        return list(self._tail)

    def close(self) -> None:
        """Stop reading its pipes (they may stay open in processes it left behind)."""
        self._close_ready()
        for fd in list(self._outputs):
            self._stop_reading(fd)

    def _on_ready_pipe(self, data: bytes) -> None:
        lines = (self._ready_partial + data).split(b"\n")
        self._ready_partial = lines.pop() if data else b""
        for line in lines:
            word = line.strip().decode(errors="replace")
            if word == "ready" and not self.ready.done():
                self.ready.set_result(True)
                if not self.gated:
                    self.serving.set_result(True)
            elif word == "serving" and not self.serving.done():
                self.serving.set_result(True)
            elif word and self.serving.done() and self.on_report is not None:
                self.on_report(self.pid, word)
        if not data:
            self._close_ready()
            for said in (self.ready, self.serving):
                if not said.done():
                    said.set_result(False)

    def _close_ready(self) -> None:
        if self._ready is not None:
            self._ready.stop()
            self._ready = None

    def _take(self, fd: int, chunk: bytes) -> None:
        """Forward the whole lines of what was read from `fd` (all of it at its end)."""
        rest, lines = forward_lines(self._partial.pop(fd, b""), chunk, self._targets.get(fd, 2))
        if rest:
            self._partial[fd] = rest
        self._tail.extend(lines)
        if not chunk:
            self._stop_reading(fd)

    def _stop_reading(self, fd: int) -> None:
        if (watch := self._outputs.pop(fd, None)) is not None:
            watch.stop()


def forward_lines(partial: bytes, chunk: bytes, target: int | Callable[[bytes], None]
                  ) -> tuple[bytes, list[str]]:
    """Write the whole lines of `partial + chunk` to `target` (everything when `chunk` is
    b"": the pipe's end); the rest, and the lines written (for a worker's last lines)."""
    data = partial + chunk
    lines, _, rest = data.rpartition(b"\n") if chunk else (data, b"", b"")
    if len(rest) >= LONGEST_LINE:
        _write(target, rest)  # the line's start; its end comes later
        rest = b""
    if lines:
        _write(target, lines + b"\n")
    return rest, [line.decode(errors="replace") for line in lines.splitlines() if line.strip()]


def _write(fd: int | Callable[[bytes], None], data: bytes) -> None:
    """Whole lines into ours, through their writer thread (output.py: a reader that stops
    reading never blocks the supervisor), or to where `fd` says (a service's log)."""
    if not isinstance(fd, int):
        fd(data)
        return
    output(fd).write(data)
