"""Helpers (no tests) for the fake-driven Windows tests: the real runtime in a thread, on a
loop of its own (as SvcRun runs it), with the fake only at the Win32 edge."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from graceful.bridge.stop import StopObserver


class Recorder(StopObserver):
    """Remembers what the runtime told its observers, with the time."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.ready_evt = threading.Event()
        self.stopped_at: float | None = None

    def ready(self) -> None:
        self.events.append(("ready", None))
        self.ready_evt.set()

    def phase(self, name: str, time_left_s: float) -> None:
        self.events.append(("phase", name))

    def stopped(self, exit_code: int) -> None:
        self.events.append(("stopped", exit_code))
        self.stopped_at = time.monotonic()

    def phases(self) -> list[str]:
        return [value for kind, value in self.events if kind == "phase"]


class Background(threading.Thread):
    """Runs `func()` and keeps its result; `join` is bounded by the caller."""

    def __init__(self, func: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._func = func
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self._func()
        except BaseException as err:
            self.error = err

    def outcome(self, timeout: float = 30.0) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "still running"
        if self.error is not None:
            raise self.error
        return self.result


def get(url: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """GET on a thread of its own: (status, Connection header, body)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.headers.get("Connection", ""), response.read().decode()


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def logged(path: Path, name: str) -> dict[str, Any] | None:
    """The first JSON log line called `name` in `path`, if there is one yet."""
    return next(iter(all_logged(path, name)), None)


def all_logged(path: Path, name: str) -> list[dict[str, Any]]:
    """Every JSON log line called `name` in `path`, in order."""
    if not path.exists():
        return []
    events = (json.loads(line) for line in path.read_text().splitlines())
    return [event for event in events if event.get("event") == name]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Handlers:
    """Requests that reached their handler, by path, in the apps this process builds (a
    middleware each app gets through graceful.lifecycle.loader.on_built: the `handlers` fixture): a
    test stops the runtime once its requests run, not after a sleep."""

    def __init__(self) -> None:
        self.entered: Counter[str] = Counter()
        self._changed = threading.Condition()

        @web.middleware
        async def count(request: web.Request, handler: Callable[[web.Request], Awaitable[
                web.StreamResponse]]) -> web.StreamResponse:
            with self._changed:
                self.entered[request.path] += 1
                self._changed.notify_all()
            return await handler(request)

        self._middleware = count

    def add_to(self, app: web.Application) -> None:
        app.middlewares.append(self._middleware)

    def hold(self, url: str, count: int = 1, timeout: float = 15.0) -> list[Background]:
        """`count` GETs of `url`, each on a thread of its own, once all are in the handler."""
        path = urllib.parse.urlsplit(url).path
        with self._changed:
            wanted = self.entered[path] + count
        requests = [Background(lambda: get(url)) for _ in range(count)]
        with self._changed:
            if not self._changed.wait_for(lambda: self.entered[path] >= wanted, timeout):
                raise AssertionError(f"{count} GET {url} not in their handler within "
                                     f"{timeout:g}s: {dict(self.entered)}")
        return requests
