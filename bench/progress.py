"""A one-line progress display on stderr (rewritten in place on a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.tty = sys.stderr.isatty()

    def status(self, label: str, detail: str) -> None:
        if self.tty:
            sys.stderr.write(f"\r\x1b[K[{self.done + 1}/{self.total}] {label} {detail}")
            sys.stderr.flush()

    def finish(self, label: str, detail: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        prefix = "\r\x1b[K" if self.tty else ""
        sys.stderr.write(f"{prefix}[{self.done}/{self.total} {elapsed:5.0f}s] {label} {detail}\n")
        sys.stderr.flush()
