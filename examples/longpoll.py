"""A long-poll that answers at once when the stop begins, so that the client polls again
(on another server) instead of holding the drain until the deadline.

    graceful serve --app-dir examples longpoll:create_app
    curl 'http://127.0.0.1:8080/poll?after=0'   # waits for a message...
    curl -X POST -d hello http://127.0.0.1:8080/messages   # ... or for the stop
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

import graceful

log = logging.getLogger("examples.longpoll")


class Board:
    """Messages, and a way to wait for new ones."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._posted = asyncio.Condition()

    async def post(self, text: str) -> None:
        async with self._posted:
            self.messages.append(text)
            self._posted.notify_all()

    async def after(self, index: int) -> list[str]:
        async with self._posted:
            await self._posted.wait_for(lambda: len(self.messages) > index)
            return self.messages[index:]


BOARD = web.AppKey("board", Board)


# --8<-- [start:poll]
async def poll(request: web.Request) -> web.Response:
    after = int(request.query.get("after", "0"))
    stop = graceful.stopping(request)
    # The messages after `after`, or None as soon as the stop begins.
    messages = await stop.race(request.app[BOARD].after(after))
    if messages is None:
        log.info("longpoll.answered", extra={"stopping": True})
        # An empty answer: the client polls again at once, and reaches another server.
        return web.json_response({"messages": [], "next": after, "stopping": True})
    return web.json_response({"messages": messages, "next": after + len(messages)})
# --8<-- [end:poll]


async def post(request: web.Request) -> web.Response:
    await request.app[BOARD].post(await request.text())
    return web.Response(status=204)


def create_app() -> web.Application:
    app = web.Application()
    app[BOARD] = Board()
    app.router.add_get("/poll", poll)
    app.router.add_post("/messages", post)
    graceful.stopping(app)  # also answer the polls under web.run_app (on_shutdown)
    return app


if __name__ == "__main__":
    web.run_app(create_app())
