"""Server-sent events that end cleanly at the stop: the last event says goodbye, the
chunked body ends properly, and the drain does not wait for a stream that never ends.

    graceful serve --app-dir examples sse:create_app
    curl -N http://127.0.0.1:8080/events        # then stop the server (Ctrl+C): "bye"

Under web.run_app the same handler ends at the app's on_shutdown, because the factory asks
for `graceful.stopping(app)` before the app starts.
"""

from __future__ import annotations

import logging

from aiohttp import web

import graceful

log = logging.getLogger("examples.sse")


# --8<-- [start:events]
async def events(request: web.Request) -> web.StreamResponse:
    stop = graceful.stopping(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache"})
    await response.prepare(request)
    sent = 0
    async for tick in stop.every(0.1):  # an event every 0.1 s until the stop begins
        await response.write(f"id: {tick}\ndata: tick {tick}\n\n".encode())
        sent += 1
    # The last event: the client learns why the stream ends, and to reconnect in 1 s
    # (by then the load balancer sends it to another server).
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
