"""The access log (--access-log): one structlog event per request, no headers or bodies."""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from graceful.logs import get_logger

log = get_logger("graceful.access")


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        log.info("http.access", method=request.method, path=request.path,
                 status=response.status, took_ms=round(time * 1e3, 2), remote=request.remote,
                 keep_alive=bool(response.keep_alive))
