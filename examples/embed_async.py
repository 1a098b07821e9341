"""Embedding graceful in async code that owns its loop and its signals: a Runtime.

    python examples/embed_async.py     # serves on a free port, asks itself for a stop

Here the program stops the runtime itself once it has served one request; a real one
calls runtime.stop("reason") from wherever it decides (any thread).
"""

import asyncio

from aiohttp import ClientSession, web

import graceful


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello\n")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    return app


async def main() -> int:
    async with graceful.Runtime(make_app, graceful.Config(port=0)) as runtime:
        runtime.add_hook(lambda app: print("bye", flush=True), name="bye", timeout=1.0)
        async with ClientSession() as client, client.get(
                f"http://127.0.0.1:{runtime.port}/") as response:
            print("served:", await response.text(), end="", flush=True)
        runtime.stop("done")                  # from any thread
        code = await runtime.wait_stopped()   # a graceful.ExitCode
    print("exit code:", int(code), flush=True)
    return int(code)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
