"""aiohttp's own ``web.run_app``, as a user of plain aiohttp would run the bench app."""

from __future__ import annotations

import argparse
import asyncio
import ssl

from aiohttp import web

from bench.apps import aiohttp_app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--shutdown-timeout", type=float, default=None)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--ssl-cert", default=None)
    parser.add_argument("--ssl-key", default=None)
    args = parser.parse_args()
    if args.ssl_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.ssl_cert, args.ssl_key)
        kwargs_tls = {"ssl_context": context}
    else:
        kwargs_tls = {}
    if args.loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    kwargs = {} if args.shutdown_timeout is None else {"shutdown_timeout": args.shutdown_timeout}
    web.run_app(aiohttp_app(), host="127.0.0.1", port=args.port, access_log=None, print=None,
                **kwargs, **kwargs_tls)


if __name__ == "__main__":
    main()
