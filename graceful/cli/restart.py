"""`graceful restart`: ask a running `graceful serve` to replace its workers, and wait for the
outcome of this request (over the supervisor's control socket: graceful/supervisor/control.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from graceful.cli.in_process import fail as _fail
from graceful.errors import ExitCode
from graceful.host.processes import alive


@click.command()
@click.option("--pid", type=int, default=None, help="Process id of the `graceful serve`.")
@click.option("--pid-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="File holding that process id (--pid-file of graceful serve).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0,
              show_default=True,
              help="SECONDS to wait for the outcome (set it above --restart-timeout).")
def restart(pid: int | None, pid_file: Path | None, timeout: float) -> None:
    """Restart a running `graceful serve`: new workers start, and once they serve the old
    ones drain and exit. The listening sockets never close; the pid stays the same.

    \b
    Exit codes: 0 the new workers serve (their pids are printed); 1 the restart failed (the
    reason is printed; the old workers serve on), or no outcome within --timeout;
    2 usage error (no such process, not a graceful serve, no pid given); 3, 4 or 5: the
    new workers serve, but an old worker's stop cut work (3), could not write the
    checkpoint (4) or had a shutdown hook fail (5), as serve's exit codes say.
    SIGTERM only ends the wait, with exit 0: it is how a service manager cancels a reload
    job when a stop supersedes it (the restart is the supervisor's, which the stop ends),
    and a reload command killed by it would mark the unit failed after a clean stop.
    """
    import signal

    from graceful.supervisor.control import NotASupervisor, ask

    signal.signal(signal.SIGTERM, _stop_waiting)

    if (pid is None) == (pid_file is None):
        _fail("give one of --pid or --pid-file", ExitCode.USAGE)
    if pid is None:
        assert pid_file is not None
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError) as err:
            _fail(f"cannot read a pid from {pid_file}: {err}", ExitCode.USAGE)
    assert pid is not None
    if sys.platform != "win32" and not alive(pid):  # Windows: the pipe's absence tells
        _fail(f"no process {pid}" + (f" (the pid file {pid_file} is stale)" if pid_file
                                     else ""), ExitCode.USAGE)
    try:
        answers = ask(pid, "restart", timeout)
        for answer in answers:
            if "error" in answer:
                _fail(f"process {pid} refused: {answer['error']}", ExitCode.USAGE)
            outcome = answer.get("outcome")
            if outcome == "ok":
                click.echo(f"restarted: pid {pid} serves with workers "
                           f"{_pids(answer.get('workers'))} (replaced "
                           f"{_pids(answer.get('replaced'))}) in {answer.get('took_s')}s")
                if "warning" in answer:  # the old workers' stop cut work or lost state
                    click.echo(f"graceful restart: warning: {answer['warning']}", err=True)
                sys.exit(int(answer.get("old_exit_code", ExitCode.OK)))
            if outcome is not None:
                serving = answer.get("serving")
                _fail(f"restart failed: {answer.get('reason')}" + (
                    f"; pid {pid} serves with workers {_pids(serving)}" if serving else ""),
                    ExitCode.ERROR)
    except NotASupervisor:
        # its control socket refused us or is not there: the three reasons look the same
        _fail(f"no graceful serve supervisor answers for process {pid} (nothing was "
              "signalled): it is another program" + (f" (is the pid file {pid_file} stale?)"
                                                     if pid_file else "")
              + ", or a supervisor of another user (run as root or as that user), or in "
              "another network namespace (run it there: docker exec)", ExitCode.USAGE)
    except TimeoutError:
        _fail(f"no outcome within {timeout:g}s", ExitCode.ERROR)
    except OSError as err:
        _fail(f"lost the supervisor's answer: {err}", ExitCode.ERROR)
    _fail(f"process {pid} ended without reporting the restart's outcome", ExitCode.ERROR)


def _stop_waiting(signum: int, frame: object) -> None:
    click.echo("graceful restart: SIGTERM: no longer waiting for the outcome (the restart "
               "is the supervisor's; a stop ends it); see the service's log", err=True)
    sys.exit(ExitCode.OK)


def _pids(pids: object) -> str:
    return ", ".join(str(pid) for pid in pids) if isinstance(pids, list) else "?"

