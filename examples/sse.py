"""Server-sent events that end cleanly at the stop and resume after a restart: the last
event says goodbye, the chunked body ends properly, the drain does not wait for a stream
that never ends, and a client that reconnects with Last-Event-ID misses no event.

    graceful serve --app-dir examples sse:create_app
    curl -N http://127.0.0.1:8080/events        # then stop the server (Ctrl+C): "bye"

The events are a feed numbered by the clock (ten a second), so that any worker can resume
it where the client's Last-Event-ID says. At a restart (`graceful restart`, SIGHUP) the new
workers already serve when the old one ends its streams: the last event says "retry: 0",
the browser reconnects at once, and the new worker sends what it missed first. At a stop,
"retry: 1000": by then the load balancer sends the client to another server.

Under web.run_app the same handler ends at the app's on_shutdown, because the factory asks
for `graceful.stopping(app)` before the app starts.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web

import graceful

log = logging.getLogger("examples.sse")
TICK_S = 0.1


def feed_position() -> int:
    return int(time.time() / TICK_S)


# --8<-- [start:events]
async def events(request: web.Request) -> web.StreamResponse:
    stop = graceful.stopping(request)
    last = request.headers.get("Last-Event-ID", "")
    following = int(last) + 1 if last.isdigit() else feed_position()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    sent = 0
    async for _ in stop.every(TICK_S):  # until the stop (or restart) begins
        while following <= feed_position():  # what a reconnecting client missed, first
            await response.write(f"id: {following}\ndata: tick {following}\n\n".encode())
            following += 1
            sent += 1
    if stop.kind == "restart":  # new workers serve already: come back at once
        await response.write(b"event: bye\ndata: server restarting\nretry: 0\n\n")
    else:
        await response.write(b"event: bye\ndata: server stopping\nretry: 1000\n\n")
    await response.write_eof()  # the terminating chunk: the client sees a whole stream
    log.info("sse.stream_ended", extra={"events": sent})
    return response
# --8<-- [end:events]


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/events", events)
    graceful.stopping(app)  # also end the streams under web.run_app (on_shutdown)
    return app


if __name__ == "__main__":
    web.run_app(create_app())
