"""A service's log stays JSON lines: what a worker writes raw (print, a warning, a
traceback, the interpreter's own last words) is wrapped, line by line, in a `worker.output`
event; its JSON lines (graceful's log) are written as they are."""

from __future__ import annotations

import json
import os
from typing import Any

import structlog

# the lines are rendered here and returned (the service's log writer takes text), with the
# processors of graceful's JSON log, whatever structlog's global configuration is
_render: Any = structlog.wrap_logger(
    structlog.ReturnLogger(), wrapper_class=structlog.BoundLogger,
    processors=[structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer()])


def as_json_lines(data: bytes, stream: str, pid: int) -> str:
    """`data` (a worker's whole lines, or a long line's start) as JSON lines."""
    out = []
    for raw in data.decode(errors="replace").splitlines():
        line = raw.rstrip("\r")
        if _is_json_object(line):
            out.append(line)
        elif line.strip():
            out.append((_render.info if stream == "stdout" else _render.warning)(
                "worker.output", line=line, stream=stream, worker_pid=pid, pid=os.getpid()))
    return "".join(line + "\n" for line in out)


def _is_json_object(line: str) -> bool:
    if not line.lstrip().startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
