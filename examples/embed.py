"""Embedding graceful: a blocking `graceful.run`, the same as `graceful serve`, without the CLI.

    python examples/embed.py           # then Ctrl+C; hits.json keeps the counter
"""

import os

from aiohttp import web

import graceful


async def hello(request: web.Request) -> web.Response:
    state = graceful.state(request)
    state["hits"] = state.get("hits", 0) + 1
    return web.Response(text=f"hello #{state['hits']}\n")


async def close_pool(app: web.Application) -> None:
    print("closing the pool", flush=True)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    graceful.add_hook(app, close_pool, timeout=2.0)
    return app


if __name__ == "__main__":
    code = graceful.run(make_app, port=int(os.environ.get("PORT", "8080")),
                        checkpoint=os.environ.get("CHECKPOINT", "hits.json"), drain_timeout=10)
    raise SystemExit(code)
