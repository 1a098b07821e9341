"""Fixtures: the real CLI in a subprocess, its JSON log read line by line."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess:
    """`python -m graceful serve TARGET --port 0 --log-format json ...` and its log."""

    def __init__(self, target: str, *args: str, env: dict[str, str] | None = None) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "graceful", "serve", target, "--host", "127.0.0.1",
             "--port", "0", "--log-format", "json", *args],
            cwd=ROOT, env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self._attach(proc)

    def _attach(self, proc: subprocess.Popen[str]) -> None:
        """Follow `proc`'s JSON log on stderr."""
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.raw: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = 0

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.raw.append(line)
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "raw", "line": line.rstrip()}
            self._lines.put(event)
        self._lines.put(None)

    def wait_for(self, name: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        """The first logged event called `name` (with `match` fields), waiting if needed."""
        for event in self.events:
            if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                return event
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if event is None:
                self._lines.put(None)
                break
            self.events.append(event)
            if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                return event
        raise AssertionError(f"no {name} event; log so far:\n{''.join(self.raw)}")

    def started(self) -> ServerProcess:
        self.port = self.wait_for("server.started")["port"]
        return self

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        while True:  # collect the rest of the log
            try:
                event = self._lines.get_nowait()
            except queue.Empty:
                break
            if event is not None:
                self.events.append(event)
        return code

    def names(self) -> list[str]:
        return [event.get("event", "") for event in self.events]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def serve() -> Iterator[Any]:
    """Start servers; every one still running at the end is killed by its pid."""
    started: list[ServerProcess] = []

    def start(target: str, *args: str, env: dict[str, str] | None = None,
              wait_started: bool = True) -> ServerProcess:
        server = ServerProcess(target, *args, env=env)
        started.append(server)
        return server.started() if wait_started else server

    yield start
    for server in started:
        server.kill()


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
