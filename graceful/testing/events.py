"""The structured events of one served process, as they arrive, waited for by name."""

from __future__ import annotations

import json
import threading
import time
from typing import Any


class EventLog:
    """JSON log lines fed by a reader (a thread on a pipe, or a stream in-process)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.closed = False
        self._changed = threading.Condition()

    def feed(self, line: str) -> None:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            event = None
        if not isinstance(event, dict):  # a print, a traceback before logging is set up
            event = {"event": "raw", "line": line.rstrip()}
        with self._changed:
            self.raw.append(line)
            self.events.append(event)
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def find(self, name: str, **match: Any) -> dict[str, Any] | None:
        with self._changed:
            return next((e for e in self.events if _matches(e, name, match)), None)

    def wait_for(self, name: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        """The first event called `name` (with the `match` fields), waiting if needed."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for event in self.events[seen:]:
                    if _matches(event, name, match):
                        return event
                seen = len(self.events)
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    break
                self._changed.wait(left)
        wanted = name + "".join(f" {k}={v!r}" for k, v in match.items())
        why = "the log ended" if self.closed else f"none within {timeout:g}s"
        raise AssertionError(f"no {wanted} event ({why}); log so far:\n{''.join(self.raw)}")

    def names(self) -> list[str]:
        with self._changed:
            return [str(event.get("event", "")) for event in self.events]


def _matches(event: dict[str, Any], name: str, match: dict[str, Any]) -> bool:
    return event.get("event") == name and all(event.get(k) == v for k, v in match.items())


class LineWriter:
    """A text stream for logs.configure whose lines go to an EventLog (in-process)."""

    def __init__(self, log: EventLog) -> None:
        self._log, self._partial = log, ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            if line:
                self._log.feed(line + "\n")
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
