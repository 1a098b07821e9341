"""graceful as a library (`graceful.run`, in-process, no supervisor) on the bench app: what
graceful's runtime costs a start, apart from the supervisor of `graceful serve`."""

from __future__ import annotations

import argparse

import graceful
from bench.apps import aiohttp_app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    graceful.run(aiohttp_app, host="127.0.0.1", port=args.port, loop=args.loop,
                 log_format="json")


if __name__ == "__main__":
    main()
