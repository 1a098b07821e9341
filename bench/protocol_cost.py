"""CPU per request of graceful's request handler against aiohttp's, in one process.

End-to-end requests per second on a 2-core machine shared by client and server move by
±10 % from run to run, far more than what graceful adds. This isolates that: the same
app, one keep-alive connection over an in-memory transport (no sockets, no client), the
request fed to the protocol, the loop run until the response is written; aiohttp's
RequestHandler and graceful's DrainingRequestHandler (made as the runtime makes it: with
the health probes installed on the app, and without them as with --no-health) take turns,
and the fastest of the rounds is kept for each (the least disturbed by other work on the
machine).

    python -m bench.protocol_cost --loop asyncio --rounds 6
    python -m bench.protocol_cost --new-connections   # a connection per request: its
        # handler made, connection_made, the request (Connection: close), connection_lost
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from graceful.http.drain import ConnectionTracker
from graceful.http.health import Health
from graceful.http.protocol import DrainingRequestHandler, handler_options

REQUEST = b"GET /work HTTP/1.1\r\nHost: bench\r\n\r\n"
CLOSING = b"GET /work HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
WARM_UP = 2000


class _MemoryTransport(asyncio.Transport):
    """Swallows writes and tells the measuring loop when a response went out."""

    def __init__(self, wrote: Callable[[], None]) -> None:
        super().__init__()
        self._wrote = wrote
        self.closed = False

    def write(self, data: Any) -> None:
        self._wrote()

    def writelines(self, list_of_data: Any) -> None:
        self._wrote()

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def per_request_us(kind: str, requests: int, new_connections: bool = False) -> float:
    """Process CPU µs per request through `kind`'s handler: "aiohttp", "graceful" (health
    probes installed on the app, the default) or "graceful-no-health"; with
    `new_connections`, each request on a connection (and a handler) of its own."""
    app = web.Application()
    app.router.add_get("/work", _ok)
    if kind == "graceful":  # the probes as the runtime installs them
        Health("/livez", "/readyz", is_ready=lambda: True, phase=lambda: "ready").install(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    server = runner.server
    assert server is not None
    loop = asyncio.get_running_loop()
    make: Callable[[], RequestHandler]
    if kind == "aiohttp":
        def make() -> RequestHandler:  # as aiohttp's Server makes them
            return RequestHandler(server, loop=loop, access_log=None)
    else:
        options = handler_options(server)
        tracker = ConnectionTracker(loop)

        def make() -> RequestHandler:  # as graceful's startup makes them
            return DrainingRequestHandler(server, tracker=tracker, loop=loop, **options)
    try:
        if new_connections:
            return await _cpu_us(functools.partial(_on_a_new_connection, make, loop), requests)
        answer = [loop.create_future()]  # the response awaited now

        def wrote() -> None:
            if not answer[0].done():
                answer[0].set_result(None)

        protocol = make()
        protocol.connection_made(_MemoryTransport(wrote))

        async def one_request() -> None:
            answer[0] = loop.create_future()
            protocol.data_received(REQUEST)
            await answer[0]
            await asyncio.sleep(0)  # the handler's task ends

        try:
            return await _cpu_us(one_request, requests)
        finally:
            protocol.connection_lost(None)
    finally:
        await runner.cleanup()


async def _on_a_new_connection(make: Callable[[], RequestHandler],
                               loop: asyncio.AbstractEventLoop) -> None:
    written = loop.create_future()
    transport = _MemoryTransport(lambda: written.done() or written.set_result(None))
    protocol = make()
    protocol.connection_made(transport)
    protocol.data_received(CLOSING)
    await written
    while not transport.closed:  # aiohttp closes it once the response is out
        await asyncio.sleep(0)
    protocol.connection_lost(None)


async def _cpu_us(one_request: Callable[[], Awaitable[None]], requests: int) -> float:
    """Process CPU µs per call of `one_request`, after WARM_UP calls."""
    for _ in range(WARM_UP):
        await one_request()
    started = time.process_time()
    for _ in range(requests):
        await one_request()
    return (time.process_time() - started) / requests * 1e6


async def compare(rounds: int, requests: int,
                  new_connections: bool = False) -> dict[str, float]:
    kinds = ["aiohttp", "graceful", "graceful-no-health"]
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    for index in range(rounds):
        for kind in kinds[index % 3:] + kinds[:index % 3]:  # each goes first in turn
            samples[kind].append(await per_request_us(kind, requests, new_connections))
    best = {kind: min(values) for kind, values in samples.items()}
    return {"aiohttp_us": best["aiohttp"], "graceful_us": best["graceful"],
            "added_us": best["graceful"] - best["aiohttp"],
            "ratio": best["aiohttp"] / best["graceful"],
            "graceful_no_health_us": best["graceful-no-health"],
            "health_us": best["graceful"] - best["graceful-no-health"]}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.protocol_cost")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--new-connections", action="store_true",
                        help="a connection (and a handler) per request")
    args = parser.parse_args()
    run = compare(args.rounds, args.requests, args.new_connections)
    if args.loop == "uvloop":
        import uvloop

        print(json.dumps(uvloop.run(run)))
    else:
        print(json.dumps(asyncio.run(run)))


if __name__ == "__main__":
    main()
