"""The supervisor's stdout and stderr, written by a thread of their own.

Everything the service logs goes through them: the supervisor's lines and its workers'
(forwarded). A reader that stops reading (a stalled log shipper, a terminal after Ctrl+S, a
pipe nobody drains) then blocks that thread, never the supervisor, which must go on
forwarding its workers' output (or they block in their own writes, and their requests
hang), take signals, stop the workers and exit. What does not fit in QUEUE_LIMIT bytes
waiting is dropped and counted, as a worker's log drops what it cannot write
(graceful/logs.py). No asyncio here: start.py forwards through it before the loop exists.
"""

from __future__ import annotations

import collections
import os
import threading

QUEUE_LIMIT = 4 << 20  # bytes waiting for one stream; beyond, lines are dropped


class Output:
    """One file descriptor (1 or 2) of the supervisor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.dropped = 0  # lines
        self.error: OSError | None = None  # the first write that failed (a broken pipe)
        self._waiting: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._writing = False
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def write(self, data: bytes) -> None:
        """Queue `data` (whole lines); drop it if QUEUE_LIMIT bytes already wait."""
        with self._changed:
            if self._size + len(data) > QUEUE_LIMIT:
                self.dropped += max(data.count(b"\n"), 1)
                return
            self._waiting.append(data)
            self._size += len(data)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"graceful-output-{self.fd}")
                self._thread.start()
            self._changed.notify_all()

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for what is queued to be written (at the exit)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._waiting and not self._writing,
                                          timeout)

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._waiting))
                data = self._waiting.popleft()
                self._size -= len(data)
                self._writing = True
            failed = None
            try:
                while data:
                    data = data[os.write(self.fd, data):]
            except OSError as err:  # a closed or broken stream: what it held is lost
                failed = err
            with self._changed:  # the counter is write()'s too
                if failed is not None:
                    self.dropped += max(data.count(b"\n"), 1)
                    self.error = self.error or failed
                self._writing = False
                self._changed.notify_all()


class TextOutput:
    """A text stream over an Output, for the supervisor's own log (structlog writes str)."""

    def __init__(self, output: Output) -> None:
        self._output = output

    def write(self, text: str) -> int:
        if self._output.error is not None:  # said once by the log's DroppingSink
            raise self._output.error
        self._output.write(text.encode(errors="backslashreplace"))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self._output.isatty()

    def fileno(self) -> int:
        return self._output.fd


_OUTPUTS: dict[int, Output] = {}
_MADE = threading.Lock()


def output(fd: int) -> Output:
    with _MADE:
        if fd not in _OUTPUTS:
            _OUTPUTS[fd] = Output(fd)
        return _OUTPUTS[fd]


def drain_all(timeout: float) -> None:
    """At the supervisor's exit: what is queued, written within `timeout` if it can be."""
    for out in list(_OUTPUTS.values()):
        out.drain(timeout)


def dropped_lines() -> int:
    return sum(out.dropped for out in _OUTPUTS.values())
