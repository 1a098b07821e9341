"""structlog setup, done once by whoever runs the runtime (the CLI or `graceful.run`).

JSON lines when asked or when stderr is not a terminal, readable console output otherwise.
aiohttp's own stdlib loggers go through the same renderer, so every line has one shape.

Three promises hold for every line, whoever logs it:
- a log write can never fail a stop, a drain, a flush or a request: the stream is wrapped in
  a `DroppingSink`, which drops a line it cannot write, counts it, and says so once on a
  fallback stream (`2>&1 | head -1` and a dead log shipper leave a broken pipe behind);
- tracebacks carry file, line, function and the exception, never frame locals, and aiohttp's
  bad-request errors lose the raw request bytes they quote (headers, query strings);
- a value, whoever sent it, cannot start a line of its own or drive the reader's terminal:
  JSON escapes control characters, and console output writes every character that is not
  printable escaped (`\\n`, `\\x1b`), and indents tracebacks, so that a line that starts at
  the first column is always one of ours.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from io import StringIO
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, WrappedLogger

from graceful.escaping import escape

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}

_sink: DroppingSink | None = None
_as_json = False  # what configure() chose


class DroppingSink:
    """A text stream around `stream` whose writes never raise.

    Each record (what is written between two flushes) goes out in one write. One that cannot
    be written (a broken pipe, a closed or full file, a writer that raises) is dropped and
    counted; the first drop is reported in one line on `fallback`, if there is one. Works
    around any object with `write` (and maybe `flush`, `isatty`): sys.stderr, a file, the
    Windows service's RotatingWriter.
    """

    def __init__(self, stream: Any, fallback: Any = None) -> None:
        self.stream, self.fallback = stream, fallback
        self.dropped = 0
        self._pending: list[str] = []
        self._lock = threading.Lock()  # structlog's and logging's locks are two locks

    def write(self, text: str) -> int:
        with self._lock:
            self._pending.append(text)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            record, self._pending = "".join(self._pending), []
            if not record:
                return
            try:
                self.stream.write(record)
                flush = getattr(self.stream, "flush", None)
                if flush is not None:
                    flush()
            except Exception as err:  # whatever the writer raises: drop the line
                self.dropped += 1
                if self.dropped == 1:
                    self._report(err)

    def _report(self, err: BaseException) -> None:
        if self.fallback is None:
            return
        try:
            self.fallback.write(f"graceful: cannot write the log ({type(err).__name__}: "
                                f"{err}); dropping log lines, counted in process.exit\n")
            self.fallback.flush()
        except Exception:  # the fallback is broken too: nothing is left
            pass

    def isatty(self) -> bool:
        try:
            return bool(self.stream.isatty())
        except Exception:  # closed, or no isatty at all
            return False


def scrub_http_errors(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """aiohttp's parser errors quote the raw request bytes (the request line with its query
    string, a header line with its Authorization value) in their message, and aiohttp logs
    them with the traceback ("Error handling request"): keep the error's class and status."""
    exc_info = event_dict.get("exc_info")
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    # looked up, not imported: the supervisor logs too and never imports aiohttp, and an
    # aiohttp error cannot exist where aiohttp was never imported
    parser_errors = getattr(sys.modules.get("aiohttp.http_exceptions"), "HttpProcessingError",
                            None)
    if parser_errors is not None and isinstance(exc, parser_errors):
        del event_dict["exc_info"]
        event_dict["error"], event_dict["status"] = type(exc).__name__, exc.code
    return event_dict


ACCESS_EVENT = "http.access"  # graceful/http/access.py logs it


def access_line(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """`http.access` as `REMOTE - "GET /path HTTP/1.1" 200 512 0.52ms` (console only)."""
    if event_dict.get("event") != ACCESS_EVENT or "status" not in event_dict:
        return event_dict
    fields = {k: event_dict.pop(k, None) for k in
              ("method", "path", "status", "took_ms", "remote", "keep_alive", "version",
               "bytes")}
    size = fields["bytes"] if fields["bytes"] is not None else "-"
    event_dict["event"] = (f'{fields["remote"] or "-"} - "{fields["method"]} {fields["path"]} '
                           f'HTTP/{fields["version"]}" {fields["status"]} {size} '
                           f'{fields["took_ms"]}ms')
    return event_dict


class _Quoted:
    """A string the console renderer writes as its repr, escapes included."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


def escape_for_console(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """The event and keys escaped, and values that are not printable quoted as a repr
    (JSON escapes them itself). structlog's console renderer quotes a value with a space or
    a line feed, but writes `a\\x1bb` raw."""
    return {escape(k) if isinstance(k, str) else k:
            escape(v) if k == "event" and isinstance(v, str)
            else _Quoted(v) if isinstance(v, str) and not v.isprintable() else v
            for k, v in event_dict.items()}


TRACEBACK_INDENT = "    "


def indented_traceback(sio: TextIO, exc_info: Any) -> None:
    """structlog's plain traceback, escaped and indented: an exception's message may quote
    what a client sent, line feeds included."""
    text = StringIO()
    structlog.dev.plain_traceback(text, exc_info)
    for line in text.getvalue().rstrip("\n").split("\n"):
        sio.write(f"{TRACEBACK_INDENT}{escape(line)}\n")


def add_pid(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Every JSON line names the process that wrote it: the supervisor and its workers, old
    and new at a restart, write to one log (graceful timeline tells their runs apart by it;
    the supervisor names a worker its lines are about as worker_pid)."""
    event_dict.setdefault("pid", os.getpid())
    return event_dict


def writes_json() -> bool:
    """Whether configure() chose JSON lines (what the supervisor's workers write too)."""
    return _as_json


def dropped_lines() -> int:
    """How many log lines the configured sink has dropped so far."""
    return _sink.dropped if _sink is not None else 0


def configure(log_format: str = "auto", level: str = "info", stream: TextIO | None = None,
              fallback: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger to write to `stream` (stderr).

    `fallback` is told once when log lines start being dropped.
    """
    global _sink, _as_json
    _sink = sink = DroppingSink(stream or sys.stderr, fallback)
    as_json = _as_json = log_format == "json" or (log_format == "auto" and not sink.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sink.isatty(),
                                           exception_formatter=indented_traceback)
    )
    # Never frame locals: they hold tokens, API keys and DSNs (structlog's default shows them).
    exc: list[Any] = [scrub_http_errors]
    if not as_json:
        exc += [access_line, escape_for_console]
    if as_json:
        exc.append(add_pid)
        exc.append(structlog.processors.ExceptionRenderer(
            ExceptionDictTransformer(show_locals=False)))
    structlog.configure(
        processors=[*shared, *exc, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sink),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sink)  # type: ignore[arg-type]
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *exc, renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])


def get_logger(name: str = "graceful") -> Any:
    return structlog.get_logger(name)
