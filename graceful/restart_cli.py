"""`graceful restart`: ask a running `graceful serve` to restart in place, wait for the outcome."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import click

from graceful.errors import ExitCode
from graceful.processes import alive

POLL_CAP_S = 0.05


@click.command()
@click.option("--pid", type=int, default=None, help="Process id of the `graceful serve`.")
@click.option("--pid-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File holding that process id.")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="SECONDS to wait for the outcome (set it above --restart-timeout).")
def restart(pid: int | None, pid_file: Path | None, timeout: float) -> None:
    """Restart a running `graceful serve` in place (SIGHUP) and wait for the outcome.

    \b
    Exit codes: 0 a successor took over (its pid is printed); 1 it did not (the reason is
    printed; the old process goes on serving), or no outcome within --timeout;
    2 usage error (no such process, no pid given).
    """
    from graceful.restart import status_path

    if sys.platform == "win32":
        _fail("on Windows, restart the service: graceful service restart NAME", ExitCode.USAGE)
    if (pid is None) == (pid_file is None):
        _fail("give one of --pid or --pid-file", ExitCode.USAGE)
    if pid is None:
        assert pid_file is not None
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError) as err:
            _fail(f"cannot read a pid from {pid_file}: {err}", ExitCode.USAGE)
    assert pid is not None
    path = status_path(pid)
    path.unlink(missing_ok=True)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        _fail(f"no process {pid}", ExitCode.USAGE)
    except PermissionError:
        _fail(f"not allowed to signal process {pid}", ExitCode.USAGE)
    deadline, delay = time.monotonic() + timeout, 0.001
    while time.monotonic() < deadline:
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            status = None
        if status is not None:
            if status.get("outcome") == "ready":
                click.echo(f"restarted: pid {pid} handed over to pid {status['successor_pid']}")
                sys.exit(ExitCode.OK)
            _fail(f"restart failed: {status.get('reason')} (exit code "
                  f"{status.get('exit_code')}); pid {pid} serves on", ExitCode.ERROR)
        if not alive(pid):
            _fail(f"process {pid} ended without reporting a hand-over", ExitCode.ERROR)
        time.sleep(delay)
        delay = min(delay * 2, POLL_CAP_S)
    _fail(f"no outcome within {timeout:g}s", ExitCode.ERROR)



def _fail(message: str, code: ExitCode) -> None:
    click.echo(f"graceful: error: {message}", err=True)
    sys.exit(int(code))
