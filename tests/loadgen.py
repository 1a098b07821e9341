"""Clients for the end-to-end tests of restarts and workers: a load that keeps sending
requests on new and keep-alive connections and counts every outcome."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from graceful.host.processes import alive
from graceful.testing.http import IncompleteResponse
from tests.rawhttp import Connection


async def ended(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class Load:
    """Clients that keep sending /slow?s=0.3 until told to stop: half on a new connection
    each time, half on keep-alive connections (reopened when the server closes one)."""

    def __init__(self, port: int, clients: int = 20) -> None:
        self.port, self.clients = port, clients
        self.outcomes: Counter[str] = Counter()
        self.errors: list[str] = []
        self.bodies: Counter[str] = Counter()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> Load:
        self._tasks = [asyncio.create_task(self._client(keep_alive=i % 2 == 0))
                       for i in range(self.clients)]
        return self

    async def answered(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.outcomes["ok"] < count:
            assert time.monotonic() < deadline, self.outcomes
            await asyncio.sleep(0.01)

    async def finish(self) -> Counter[str]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.outcomes

    async def _client(self, keep_alive: bool) -> None:
        conn: Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = await Connection.open(self.port)
                conn.send("GET", "/slow?s=0.3",
                          headers={} if keep_alive else {"Connection": "close"})
                response = await asyncio.wait_for(conn.read_response(), 10)
            except (OSError, asyncio.IncompleteReadError, TimeoutError,
                    IncompleteResponse) as err:
                kind = ("refused" if isinstance(err, ConnectionRefusedError) else
                        "reset" if isinstance(err, ConnectionResetError) else
                        "cut" if isinstance(err, IncompleteResponse) else
                        "unanswered")
                self.outcomes[kind] += 1
                self.errors.append(f"{time.time():.3f} keep_alive={keep_alive} {err!r}")
                if conn is not None:
                    conn.writer.close()
                conn = None
                continue
            self.outcomes["ok" if response.status == 200 else str(response.status)] += 1
            self.bodies[response.body.decode().split()[0]] += 1
            if not keep_alive or response.closes:
                conn.writer.close()
                conn = None
        if conn is not None:
            conn.writer.close()


async def get(port: int, path: str) -> tuple[int, str]:
    conn = await Connection.open(port)
    try:
        response = await conn.request("GET", path)
        return response.status, response.body.decode()
    finally:
        conn.writer.close()
