"""The access log (--access-log): one structlog event per request, no headers, query
strings or bodies; in console output, the usual one-line form (logs.access_line)."""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from graceful.logs import ACCESS_EVENT, get_logger

log = get_logger("graceful.access")
EVENT = ACCESS_EVENT


class AccessLogger(AbstractAccessLogger):
    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        # aiohttp makes one per connection. Bound once here, not through structlog's lazy
        # proxy, which rebuilds the logger at every call: 57 against 27 µs a line measured.
        self._log = log.bind()

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        version = request.version
        self._log.info(EVENT, method=request.method, path=request.path,
                       status=response.status, took_ms=round(time * 1e3, 2),
                       remote=request.remote, keep_alive=bool(response.keep_alive),
                       version=f"{version[0]}.{version[1]}", bytes=response.body_length)
