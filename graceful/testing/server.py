"""What a test holds of a served app: its address, requests held in flight, the stop, the
exit, the events, the checkpoint; and assertions whose failures say what went wrong."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import time
from pathlib import Path
from typing import Any

from graceful.testing.events import EventLog
from graceful.testing.http import HOLD_HEADER, Connection, Held, IncompleteResponse, Response

# graceful ignores a stop request within this long of the last one (one Ctrl+C reaching it
# twice); a test's second and third stop() are spaced by it, so that each one counts.
REPEAT_IGNORED_S = 0.5
REPEAT_MARGIN_S = 0.05

# The phases of a stop as logged, in order: "a|b" is either, "a?" may be missing (no
# checkpoint; in-process there is no process.exit).
TIMELINE = ("stop.requested", "listeners.closed", "drain.done|drain.deadline", "hooks.done",
            "checkpoint.flushed?", "process.exit?")

_MISSING: Any = object()


class GracefulServer:
    """Base of SubprocessServer and InProcessServer (graceful/testing/process.py)."""

    host = "127.0.0.1"

    def __init__(self, checkpoint: str | Path | None = None) -> None:
        self.log = EventLog()
        self.port = 0
        self.checkpoint_path = Path(checkpoint) if checkpoint is not None else None
        self.held: list[Held] = []
        self.stops: list[float] = []  # time.monotonic() of each stop() sent
        self.responses: list[Response] = []  # every response the helpers read
        self._marks = itertools.count(1)
        self._connections: list[Connection] = []

    # -- to be provided by a subclass ------------------------------------------------------

    def _send_stop(self, how: Any, reason: str) -> None:
        raise NotImplementedError

    def wait_exit(self, timeout: float = 60.0) -> int:
        """Wait for the end and return the exit code."""
        raise NotImplementedError

    def running(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        """End whatever still runs; the fixture calls it at teardown."""
        for conn in self._connections:
            conn.close()

    # -- address and events ----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def events(self) -> list[dict[str, Any]]:
        """The structured events seen so far (one dict per JSON log line)."""
        return self.log.events

    @property
    def raw(self) -> list[str]:
        return self.log.raw

    def names(self) -> list[str]:
        return self.log.names()

    def wait_for(self, name: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        """The first event called `name` with the `match` fields, waiting up to `timeout`."""
        return self.log.wait_for(name, timeout, **match)

    async def event(self, name: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        """`wait_for` without blocking the test's event loop."""
        return await asyncio.to_thread(self.log.wait_for, name, timeout, **match)

    def started(self) -> GracefulServer:
        self.port = self.wait_for("server.started")["port"]
        return self

    # -- requests --------------------------------------------------------------------------

    async def connect(self) -> Connection:
        conn = await Connection.open(self.port, self.host)
        self._connections.append(conn)
        return conn

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> Response:
        """One request on a connection of its own."""
        conn = await self.connect()
        try:
            response = await conn.request(method, path, body, headers)
        finally:
            conn.close()
        self.responses.append(response)
        return response

    async def get(self, path: str) -> Response:
        return await self.request("GET", path)

    async def hold(self, path: str, method: str = "GET", body: bytes = b"",
                   headers: dict[str, str] | None = None, timeout: float = 15.0) -> Held:
        """Send a request on a connection of its own and return once its handler runs.

        The served app logs `testing.request.entered` for it (graceful/testing/marks.py)
        just before calling the handler; `await held.response()` reads the answer later.
        """
        mark = str(next(self._marks))
        conn = await self.connect()
        conn.send(method, path, body, {**(headers or {}), HOLD_HEADER: mark})
        entered = await self.event("testing.request.entered", timeout, hold=mark)
        held = Held(method, path, conn, mark, entered)
        self.held.append(held)
        return held

    # -- the stop --------------------------------------------------------------------------

    def stop(self, how: Any = "SIGTERM", reason: str = "", *, wait: bool = True) -> None:
        """Send a stop: a signal (name or number) or, in-process, any StopSource.

        A second and third stop() are spaced REPEAT_IGNORED_S after the last, so that
        graceful counts them (it ignores a repeat within that window); with `wait` this
        returns once the server has logged the request (`stop.requested`).
        """
        if self.stops:
            gap = self.stops[-1] + REPEAT_IGNORED_S + REPEAT_MARGIN_S - time.monotonic()
            if gap > 0:
                time.sleep(gap)
        self.stops.append(time.monotonic())
        self._send_stop(how, reason)
        if wait:
            self.wait_for("stop.requested", attempt=len(self.stops))

    async def exited(self, timeout: float = 60.0) -> int:
        """`wait_exit` without blocking the test's event loop."""
        return await asyncio.to_thread(self.wait_exit, timeout)

    def checkpoint(self) -> dict[str, Any]:
        """The state in the checkpoint file (--checkpoint), as `graceful checkpoint show`."""
        from graceful import checkpoint

        if self.checkpoint_path is None:
            raise AssertionError("this server was started without a checkpoint")
        return checkpoint.read(self.checkpoint_path).state

    # -- assertions ------------------------------------------------------------------------

    async def assert_held_answered(self, status: int = 200, timeout: float = 60.0) -> None:
        """Every request held in flight got its whole response, with `status`."""
        problems = []
        for held in self.held:
            try:
                response = await held.response(timeout)
            except IncompleteResponse as err:
                problems.append(f"{held}: cut short: {err}")
                continue
            except TimeoutError:
                problems.append(f"{held}: no response within {timeout:g}s")
                continue
            if response not in self.responses:
                self.responses.append(response)
            if response.status != status:
                problems.append(f"{held}: status {response.status}, wanted {status}: "
                                f"{response.body[:200]!r}")
        if problems:
            raise AssertionError(self._explain(
                f"{len(problems)} of {len(self.held)} requests held in flight were not "
                "answered in full", problems))

    def assert_closes_after_stop(self) -> None:
        """Every response read after the first stop() (by the helpers, or a held request's
        `response()`) said `Connection: close`."""
        if not self.stops:
            raise AssertionError("no stop() was sent")
        for held in self.held:
            answer = held.answered()
            if answer is not None and answer not in self.responses:
                self.responses.append(answer)
        late = [r for r in self.responses if r.received_at >= self.stops[0]]
        kept = [f"status {r.status} at +{r.received_at - self.stops[0]:.3f}s, "
                f"Connection: {r.headers.get('connection', '(none)')}"
                for r in late if not r.closes]
        if kept:
            raise AssertionError(self._explain(
                f"{len(kept)} of {len(late)} responses after the stop kept the connection "
                "open", kept))

    def assert_timeline(self, budget_s: float | None = None,
                        phases: tuple[str, ...] = TIMELINE) -> None:
        """The stop's phases were logged, in order, and the last of them came within
        `budget_s` of the first. "a|b" is either event, "a?" may be missing."""
        names = self.names()
        found: list[tuple[str, int]] = []
        for phase in phases:
            where = [i for i, name in enumerate(names) if name in phase.rstrip("?").split("|")]
            if where:
                found.append((phase, where[0]))
            elif not phase.endswith("?"):
                raise AssertionError(self._explain(f"no {phase} event in the log", names))
        order = [phase for phase, _ in sorted(found, key=lambda item: item[1])]
        if order != [phase for phase, _ in found]:
            raise AssertionError(self._explain(
                f"the stop's phases came out of order: {' < '.join(order)}", names))
        if budget_s is not None:
            first, last = self.events[found[0][1]], self.events[found[-1][1]]
            took = _seconds(last) - _seconds(first)
            if took > budget_s:
                raise AssertionError(self._explain(
                    f"the stop took {took:.3f}s from {first['event']} to {last['event']}, "
                    f"over the budget of {budget_s:g}s", self.timeline()))

    def assert_exit(self, code: int, timeout: float = 60.0) -> None:
        """The process ended with `code` (waiting for it)."""
        got = self.wait_exit(timeout)
        if got != code:
            raise AssertionError(self._explain(f"exit code {got}, wanted {code}",
                                               self.raw[-30:]))

    def assert_checkpoint(self, key: str, value: Any = _MISSING) -> None:
        """The checkpoint file holds `key` (equal to `value`, when given)."""
        state = self.checkpoint()
        if key not in state:
            raise AssertionError(f"the checkpoint has no {key!r}; it holds {sorted(state)}")
        if value is not _MISSING and state[key] != value:
            raise AssertionError(f"the checkpoint's {key!r} is {state[key]!r}, wanted {value!r}")

    def timeline(self) -> list[str]:
        """The events from the first stop on, as `+0.123s event key=value` lines."""
        start = next((e for e in self.events if e.get("event") == "stop.requested"), None)
        if start is None:
            return []
        zero = _seconds(start)
        skip = {"event", "timestamp", "level", "logger"}
        return [f"+{_seconds(e) - zero:.3f}s {e['event']} "
                + " ".join(f"{k}={v}" for k, v in e.items() if k not in skip)
                for e in self.events[self.events.index(start):] if "timestamp" in e]

    def _explain(self, summary: str, details: list[str]) -> str:
        return summary + ":\n" + "\n".join(f"  {line}".rstrip() for line in details)


def _seconds(event: dict[str, Any]) -> float:
    return datetime.datetime.fromisoformat(event["timestamp"]).timestamp()
