"""`graceful service reload NAME`: send graceful's control 129 and wait for the outcome of
this reload in the service's log (the SCM carries no answer to a control but its status).
The log is read from where it was when the control was sent: ours is the first
`restart.done` or `restart.failed` after our `restart.requested` that served it
(`last_request` at or past our `request`): a reload asked for while another runs is served by
the next one, with the code on disk by then (graceful/supervisor/rolling.py)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from graceful.bridge import win32 as w
from graceful.bridge.windows_service import SERVICE_CONTROL_RELOAD
from graceful.errors import ExitCode, GracefulError

POLL_S = 0.2


def reload_service(win32: w.Win32, name: str, timeout: float) -> None:
    from graceful.cli.serve_options import parse_serve
    from graceful.windows.service_host import host_tail, log_file_for, parse_host_args

    status = _call(win32.query_service, name)
    if status.state != w.SERVICE_RUNNING:
        _fail(f"{name} is {status.state_name}, not running", ExitCode.ERROR)
    try:
        host = parse_host_args(host_tail(_call(win32.query_service_command, name)))
    except GracefulError as err:
        _fail(f"{name} is not a graceful service ({err})", ExitCode.USAGE)
    try:
        config = parse_serve(host.serve, environ=False).config
    except GracefulError as err:  # its --config file as it is now: the reload would fail
        _fail(f"reload failed: {err}; {name} serves on as it was", ExitCode.ERROR)
    if config.workers < 2:
        _fail(f"{name} runs one worker, in its own process: a reload needs --workers 2 or "
              "more (reinstall with it), or `graceful service restart` (a stop, then a "
              "start)", ExitCode.USAGE)
    log = Path(host.log_file or log_file_for(host.name, config))
    offset = log.stat().st_size if log.exists() else 0
    _call(win32.control_service, name, SERVICE_CONTROL_RELOAD)
    outcome = _outcome(log, offset, timeout, lambda: _call(win32.query_service, name).state)
    if outcome is None:
        _fail(f"no outcome within {timeout:g}s; see {log}", ExitCode.ERROR)
    if outcome.get("event") == "restart.done":
        click.echo(f"{name}: reloaded: workers {outcome.get('workers')} replaced "
                   f"{outcome.get('replaced')} in {outcome.get('took_s')}s")
        sys.exit(ExitCode.OK)
    serving = outcome.get("serving")
    said = _worker_said(outcome.get("last_lines") or [])
    _fail(f"reload failed: {outcome.get('reason')}" + (f": {said}" if said else "")
          + (f"; {name} serves with workers {serving}" if serving else ""), ExitCode.ERROR)


def _worker_said(lines: list[str]) -> str:
    """The failing worker's last word: its error line (a bad MODULE's one line), else the
    `error` of its last JSON log line that has one."""
    for line in reversed(lines):
        try:
            event = json.loads(line)
        except ValueError:
            return line.strip().removeprefix("graceful: error: ")
        if isinstance(event, dict) and event.get("error"):
            return str(event["error"])
    return ""


def _outcome(log: Path, offset: int, timeout: float,
             state: Callable[[], int]) -> dict[str, Any] | None:
    """Our reload's outcome in the log; a stop that ended it is one too."""
    deadline = time.monotonic() + timeout
    requested: int | None = None  # our request's number (0: a supervisor that gives none)
    rest = b""
    while time.monotonic() < deadline:
        if state() != w.SERVICE_RUNNING:  # a stop (or a pause) came: what the log says next
            time.sleep(POLL_S)
            deadline = min(deadline, time.monotonic() + 2.0)
        try:
            with open(log, "rb") as file:
                file.seek(offset)
                chunk = file.read()
        except OSError:
            chunk = b""
        if log.exists() and log.stat().st_size < offset:
            offset, rest = 0, b""  # rotated: the new file from its start
            continue
        offset += len(chunk)
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            name = event.get("event") if isinstance(event, dict) else None
            if (name == "restart.requested" and event.get("source") == "SCM_RELOAD"
                    and requested is None):
                requested = int(event.get("request") or 0)
            elif (requested is not None and name in ("restart.done", "restart.failed")
                  and int(event.get("last_request") or requested) >= requested):
                return event
            elif requested is not None and name in ("restart.abandoned",
                                                    "supervisor.stopping"):
                return {"event": "restart.failed", "reason": "the service is stopping"}
        time.sleep(POLL_S)
    return None


def _call(func: Any, *args: Any) -> Any:
    try:
        return func(*args)
    except w.Win32Error as err:
        _fail(str(err), ExitCode.ERROR)


def _fail(message: str, code: int) -> Any:
    click.echo(f"graceful service: error: {message}", err=True)
    sys.exit(int(code))
