"""Startup checks: a dependency that is down at start (graceful.add_check).

1. A required check whose dependency is down is retried; the dependency coming up within
   --startup-timeout lets the start go on.
2. A required check still failing at --startup-timeout ends the start with exit 1, naming
   the check and its last error.
3. An optional check that fails does not block the start: readiness is 200 "degraded"
   (503 with --no-degraded-ready), the app reads the degraded state, `check.failed` is
   logged; the dependency coming back is noticed in the background (`check.recovered`)
   and readiness is "ready" again.
4. A stop while a required check is being retried ends the start at once (exit 0).
5. A stop while an optional check is retried in the background is not delayed by it.
"""

from __future__ import annotations

import asyncio
import socket
import time

from tests.rawhttp import get


class Dependency:
    """A TCP server on 127.0.0.1 that the test starts and stops: the app's database."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        self._server = await asyncio.start_server(answer, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def test_required_check_retried_until_dependency_is_up(serve):
    """1."""
    db = Dependency()
    server = serve("tests.apps:with_dependencies", "--startup-timeout", "20",
                   env={"DB_PORT": str(db.port)}, wait_started=False)
    failed = await asyncio.to_thread(server.wait_for, "check.failed", check="database")
    assert failed["required"] is True and "ConnectionRefusedError" in failed["error"]
    await db.start()
    try:
        await asyncio.to_thread(server.started)
        assert server.wait_for("check.passed", check="database")["attempt"] >= 2
        assert (await get(server.port, "/readyz")).body == b"ready\n"
        server.signal()
        assert await asyncio.to_thread(server.wait) == 0
    finally:
        await db.stop()


async def test_required_check_failing_ends_the_start(serve):
    """2."""
    db = Dependency()
    started = time.monotonic()
    server = serve("tests.apps:with_dependencies", "--startup-timeout", "1",
                   env={"DB_PORT": str(db.port)}, wait_started=False)
    assert await asyncio.to_thread(server.wait) == 1
    assert time.monotonic() - started < 10
    failed = server.wait_for("process.failed")
    assert "database" in failed["error"] and "ConnectionRefusedError" in failed["error"]
    assert "server.started" not in server.names()


async def test_optional_check_failing_starts_degraded(serve):
    """3."""
    cache = Dependency()
    server = serve("tests.apps:with_dependencies", env={"CACHE_PORT": str(cache.port)})
    failed = server.wait_for("check.failed", check="cache")
    assert failed["required"] is False
    ready = await get(server.port, "/readyz")
    assert (ready.status, ready.body) == (200, b"degraded\n")
    assert (await get(server.port, "/page")).body == b"placeholder (cache)\n"
    await cache.start()
    try:
        await asyncio.to_thread(server.wait_for, "check.recovered", check="cache")
        ready = await get(server.port, "/readyz")
        assert (ready.status, ready.body) == (200, b"ready\n")
        assert (await get(server.port, "/page")).body == b"live\n"
        server.signal()
        assert await asyncio.to_thread(server.wait) == 0
    finally:
        await cache.stop()


async def test_degraded_is_not_ready_when_asked(serve):
    """3, with --no-degraded-ready."""
    cache = Dependency()
    server = serve("tests.apps:with_dependencies", "--no-degraded-ready",
                   env={"CACHE_PORT": str(cache.port)})
    ready = await get(server.port, "/readyz")
    assert (ready.status, ready.body) == (503, b"degraded\n")
    assert (await get(server.port, "/page")).status == 200  # the app still serves
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0


async def test_stop_during_required_retries_is_not_delayed(serve):
    """4."""
    db = Dependency()
    server = serve("tests.apps:with_dependencies", "--startup-timeout", "60",
                   env={"DB_PORT": str(db.port)}, wait_started=False)
    await asyncio.to_thread(server.wait_for, "check.failed", check="database")
    stopped_at = time.monotonic()
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    assert time.monotonic() - stopped_at < 3
    assert "start.abandoned" in server.names()


async def test_stop_during_background_retries_is_not_delayed(serve):
    """5: every try of the check hangs until its 2 s timeout; the stop does not wait for
    the one under way."""
    server = serve("tests.apps:with_dependencies", env={"HANGING_CHECK": "optional"})
    assert server.wait_for("check.failed", check="hangs")["error"] == "timed out after 2s"
    stopped_at = time.monotonic()
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    assert time.monotonic() - stopped_at < 1
