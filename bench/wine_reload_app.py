"""The app of `bench wine-reload`: bench/apps.py's, each worker writing the request ids it
sees to a file of its own (BENCH_SEEN_LOG.PID): several Windows processes appending to one
file do not append atomically."""

from __future__ import annotations

import os

from aiohttp import web

from bench.apps import SEEN_ENV, aiohttp_app


def app() -> web.Application:
    if path := os.environ.get(SEEN_ENV):
        os.environ[SEEN_ENV] = f"{path}.{os.getpid()}"
    return aiohttp_app()
