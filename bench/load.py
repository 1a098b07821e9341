"""C concurrent clients looping requests until told the server is gone, plus a prober
that times when the listener stops accepting."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from bench.client import REFUSED, Attempt, Conn, Request, attempt


@dataclasses.dataclass
class LoadConfig:
    port: int
    connections: int
    request: Request
    stagger_s: float  # client i starts at i/C of this, so requests are out of phase
    attempt_timeout_s: float
    # After a refused connect a client waits, doubling up to the cap: it keeps probing
    # whether the server accepts again without a connect storm eating the CPU the server
    # needs to drain (the prober times the listener close to 5 ms anyway).
    refused_backoff_s: float = 0.01
    refused_backoff_max_s: float = 0.2
    max_attempts_per_client: int = 100_000


@dataclasses.dataclass
class LoadState:
    attempts: list[Attempt] = dataclasses.field(default_factory=list)
    stopped: bool = False  # set once the server process is gone
    in_flight: int = 0
    refused_at: list[float] = dataclasses.field(default_factory=list)


async def client(index: int, cfg: LoadConfig, state: LoadState) -> None:
    await asyncio.sleep(cfg.stagger_s * index / max(cfg.connections, 1))
    conn: Conn | None = None
    backoff = cfg.refused_backoff_s
    try:
        for n in range(cfg.max_attempts_per_client):
            if state.stopped:
                return
            a = Attempt(req_id=f"{index}-{n}", reused=conn is not None, start=time.monotonic())
            state.attempts.append(a)
            state.in_flight += 1
            try:
                conn = await attempt(cfg.port, conn, cfg.request, a, cfg.attempt_timeout_s)
            finally:
                state.in_flight -= 1
            if cfg.request.close and conn is not None:
                conn.close()
                conn = None
            if a.error == REFUSED:
                state.refused_at.append(a.end)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cfg.refused_backoff_max_s)
            else:
                backoff = cfg.refused_backoff_s
    finally:
        if conn is not None:
            conn.close()


async def probe_listener(port: int, state: LoadState, interval_s: float = 0.005,
                         limit_s: float = 120.0) -> tuple[float | None, float | None]:
    """Connect every ``interval_s`` (closing at once) until refused.

    Returns (last accepted connect, first refused connect) as monotonic times.
    """
    last_ok: float | None = None
    deadline = time.monotonic() + limit_s
    while not state.stopped and time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return last_ok, time.monotonic()
        except OSError:
            pass
        else:
            last_ok = time.monotonic()
            writer.close()
        await asyncio.sleep(interval_s)
    return last_ok, None


def start_clients(cfg: LoadConfig, state: LoadState) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(client(i, cfg, state)) for i in range(cfg.connections)]


async def finish_clients(tasks: list[asyncio.Task[None]], grace_s: float) -> None:
    """Wait for the clients to notice the stop; cancel any still stuck after ``grace_s``."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=grace_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
