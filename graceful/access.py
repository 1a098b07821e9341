"""The access log (--access-log): one structlog event per request, no headers, query
strings or bodies; in console output, the usual one-line form."""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from structlog.typing import EventDict, WrappedLogger

from graceful.logs import get_logger

log = get_logger("graceful.access")
EVENT = "http.access"


class AccessLogger(AbstractAccessLogger):
    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        # aiohttp makes one per connection. Bound once here, not through structlog's lazy
        # proxy, which rebuilds the logger at every call: 57 against 27 µs a line measured.
        self._log = log.bind()

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        version = request.version
        self._log.info(EVENT, method=request.method, path=request.path,
                 status=response.status, took_ms=round(time * 1e3, 2), remote=request.remote,
                 keep_alive=bool(response.keep_alive), version=f"{version[0]}.{version[1]}",
                 bytes=response.body_length)


def console_line(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """`http.access` as `REMOTE - "GET /path HTTP/1.1" 200 512 0.52ms` (console only)."""
    if event_dict.get("event") != EVENT or "status" not in event_dict:
        return event_dict
    fields = {k: event_dict.pop(k, None) for k in
              ("method", "path", "status", "took_ms", "remote", "keep_alive", "version",
               "bytes")}
    event_dict["event"] = (f'{fields["remote"] or "-"} - "{fields["method"]} {fields["path"]} '
                           f'HTTP/{fields["version"]}" {fields["status"]} '
                           f'{fields["bytes"] if fields["bytes"] is not None else "-"} '
                           f'{fields["took_ms"]}ms')
    return event_dict
