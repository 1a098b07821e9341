"""`graceful service ...`: install graceful as a Windows service and control it.

Every SCM call goes through the Win32 seam (`ctx.obj`, the real one unless a test passes a
fake), so this module runs on Linux in the tests; on a real Linux command line it says that
it is Windows only and exits 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from graceful.bridge import win32 as w
from graceful.cli.serve_options import parse_serve
from graceful.errors import ExitCode, GracefulError
from graceful.windows import frozen, scm_text
from graceful.windows.service_host import host_tail, log_file_for, parse_host_args

ACCOUNTS = {"localsystem": None, "localservice": "NT AUTHORITY\\LocalService",
            "networkservice": "NT AUTHORITY\\NetworkService"}
STARTUPS = {"auto": (w.SERVICE_AUTO_START, False), "delayed": (w.SERVICE_AUTO_START, True),
            "manual": (w.SERVICE_DEMAND_START, False)}
HOST_MODULE = "graceful.windows.service_host"
# The SCM waits this much longer than our stop budget before it gives up on PRESHUTDOWN.
PRESHUTDOWN_SLACK_S = 5.0
POLL_S = 0.25


def host_command(name: str, serve_args: Sequence[str], *, app_dir: str,
                 log_file: Path | None = None,
                 log_retention_days: float | None = None) -> list[str]:
    """The command line the SCM runs. In a venv, the venv's python.exe is a launcher that
    starts the real interpreter as a child, which then cannot reach the SCM (error 1063):
    run the base interpreter and add the venv's site-packages (with its .pth files). An
    executable built by `graceful bundle` runs itself (graceful/windows/frozen.py)."""
    tail = [name, "--app-dir", app_dir]
    tail += ["--log-file", str(log_file)] if log_file else []
    if log_retention_days is not None:
        tail += ["--log-retention-days", f"{log_retention_days:g}"]
    tail += ["--", *serve_args]
    if frozen.is_frozen():
        return [sys.executable, frozen.HOST_COMMAND, *tail]
    if sys.prefix == sys.base_prefix:
        return [sys.executable, "-m", HOST_MODULE, *tail]
    site = sysconfig.get_paths()["purelib"]
    boot = (f"import site; site.addsitedir({site!r}); "
            f"from {HOST_MODULE} import main; main()")
    return [getattr(sys, "_base_executable", sys.executable), "-c", boot, *tail]


@click.group()
@click.pass_context
def service(ctx: click.Context) -> None:
    """Install graceful as a Windows service and control it (Windows only)."""
    if ctx.obj is None:
        if sys.platform != "win32":
            _fail(f"graceful service is Windows only (this is {sys.platform})", ExitCode.USAGE)
        ctx.obj = w.real()


@service.command(context_settings={"ignore_unknown_options": True})
@click.argument("name")
@click.option("--display-name", help="Shown in services.msc; default: graceful NAME.")
@click.option("--description", default="", help="Shown in services.msc.")
@click.option("--startup", type=click.Choice(list(STARTUPS)), default="auto", show_default=True)
@click.option("--restart-on-failure", type=click.FloatRange(min=0), metavar="SECONDS",
              help="Restart after SECONDS when the service fails (reset after a day).")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON log, rotated by size and daily, gzipped; default: next to the "
                   "checkpoint.")
@click.option("--log-retention-days", type=click.FloatRange(min=0, min_open=True),
              default=None, help="Delete rotated logs older than this  [default: 14].")
@click.option("--app-dir", type=click.Path(file_okay=False, exists=True),
              help="The service's working directory, and the folder MODULE is imported "
                   "from; default: the current one.")
@click.option("--env", "environment", multiple=True, metavar="KEY=VALUE",
              help="An environment variable of the service (repeatable).")
@click.option("--account", default="LocalSystem", show_default=True,
              help="LocalSystem, LocalService, NetworkService, or a user (DOMAIN\\user, "
                   ".\\user) with the 'Log on as a service' right.")
@click.option("--password", envvar="GRACEFUL_SERVICE_PASSWORD",
              help="A user account's password; asked for when not given (never echoed).")
@click.option("--depends-on", "dependencies", multiple=True, metavar="SERVICE",
              help="A service to start first (repeatable).")
@click.argument("serve_args", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_obj
def install(win32: w.Win32, name: str, display_name: str | None, description: str,
            startup: str, restart_on_failure: float | None, log_file: Path | None,
            log_retention_days: float | None, app_dir: str | None,
            environment: tuple[str, ...], account: str, password: str | None,
            dependencies: tuple[str, ...], serve_args: tuple[str, ...]) -> None:
    """Install service NAME that runs `graceful serve SERVE_ARGS` (after a `--`)."""
    env = _environment(environment)
    user = ACCOUNTS.get(account.lower(), account)
    if user is not None and user not in ACCOUNTS.values() and password is None:
        password = click.prompt(f"password of {user}", hide_input=True)
    try:
        parsed = parse_serve(serve_args)
        app_dir = os.path.abspath(app_dir or parsed.app_dir or os.getcwd())
        _check_target(parsed.target, app_dir)
    except GracefulError as err:
        _fail(f"cannot install {name}: {err}", err.exit_code)
    config = parsed.config
    start_type, delayed = STARTUPS[startup]
    # Every option resolved now, GRACEFUL_* of this shell included: the SCM starts the
    # service with the system's environment, and the host reads none: a GRACEFUL_* left to
    # the service's start would silently not apply.
    log_path = Path(os.path.abspath(log_file or log_file_for(name, config)))
    command = host_command(name, [parsed.target, *parsed.options], app_dir=app_dir,
                           log_file=log_path, log_retention_days=log_retention_days)
    spec = w.ServiceSpec(
        name=name, display_name=display_name or f"graceful {name}",
        description=description or f"graceful serve {parsed.target}",
        argv=tuple(command), start_type=start_type,
        delayed_start=delayed, restart_delay_s=restart_on_failure,
        preshutdown_timeout_ms=int((config.stop_budget + PRESHUTDOWN_SLACK_S) * 1000),
        account=user, password=password if user not in ACCOUNTS.values() else None,
        dependencies=dependencies, environment=env)
    _call(win32.create_service, spec)
    click.echo(f"installed {name}: {spec.command_line}")
    click.echo(f"  stop budget {config.stop_budget:g}s, preshutdown timeout "
               f"{spec.preshutdown_timeout_ms} ms, logs {log_path}")
    if parsed.config_file:
        click.echo(f"  config {parsed.config_file}: read at each start (an edit applies at "
                   "the next start; the preshutdown timeout is the install's)")


@service.command()
@click.argument("name")
@click.option("--stop", "stop_first", is_flag=True,
              help="Stop it first when it runs (waits for the drain, up to --timeout).")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True)
@click.pass_obj
def remove(win32: w.Win32, name: str, stop_first: bool, timeout: float) -> None:
    """Remove service NAME. A service that runs is refused (Windows would only mark it for
    deletion while it goes on serving), unless --stop: then it is stopped first and the
    exit code is the service's, as with `stop`."""
    code = ExitCode.OK
    status = _call(win32.query_service, name)
    if status.state != w.SERVICE_STOPPED:
        if not stop_first:
            _fail(f"{name} is {status.state_name}: stop it first (graceful service stop "
                  f"{name}), or remove it with --stop", ExitCode.ERROR)
        status = _stop(win32, name, timeout)
        if status.state != w.SERVICE_STOPPED:
            _fail(f"{name} did not stop in {timeout:g}s: not removed", ExitCode.ERROR)
        code = _service_exit_code(status)
    _call(win32.delete_service, name)
    click.echo(f"removed {name}")
    sys.exit(code)


@service.command()
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True)
@click.pass_obj
def start(win32: w.Win32, name: str, timeout: float) -> None:
    """Start service NAME and wait until it runs."""
    _start_and_wait(win32, name, timeout)


def _start_and_wait(win32: w.Win32, name: str, timeout: float) -> None:
    _call(win32.start_service, name)
    status = _wait(win32, name, {w.SERVICE_RUNNING, w.SERVICE_STOPPED}, timeout)
    _print(name, status)
    if status.state != w.SERVICE_RUNNING:
        sys.exit(ExitCode.ERROR)


@service.command()
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True)
@click.pass_obj
def stop(win32: w.Win32, name: str, timeout: float) -> None:
    """Stop service NAME and wait until it has drained and stopped. The exit code is the
    service's own (3: drain deadline, 4: checkpoint not written...), 1 when it did not
    stop in time or ended without reporting one."""
    sys.exit(_service_exit_code(_stop(win32, name, timeout)))


@service.command()
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True)
@click.pass_obj
def pause(win32: w.Win32, name: str, timeout: float) -> None:
    """Pause service NAME: it stops accepting and drains, keeping its process and state;
    waits until PAUSED. Connections made while paused wait in the accept queue."""
    _pause_or_continue(win32, name, timeout, w.SERVICE_CONTROL_PAUSE)


@service.command(name="continue")
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True)
@click.pass_obj
def continue_(win32: w.Win32, name: str, timeout: float) -> None:
    """Continue paused service NAME; waits until it runs (accepting again)."""
    _pause_or_continue(win32, name, timeout, w.SERVICE_CONTROL_CONTINUE)


def _pause_or_continue(win32: w.Win32, name: str, timeout: float, control: int) -> None:
    pause = control == w.SERVICE_CONTROL_PAUSE
    status = _call(win32.query_service, name)
    # A continue while the pause still drains ends the pause (the service accepts it).
    before, after = (({w.SERVICE_RUNNING}, w.SERVICE_PAUSED) if pause
                     else ({w.SERVICE_PAUSED, w.SERVICE_PAUSE_PENDING}, w.SERVICE_RUNNING))
    if status.state == after:
        _print(name, status)
        return
    if status.state not in before:
        _fail(f"{name} is {status.state_name}, not {'running' if pause else 'paused'}",
              ExitCode.ERROR)
    _print(name, _call(win32.control_service, name, control))
    # A continue that cannot accept again (the port taken while paused) ends PAUSED.
    ends = {after, w.SERVICE_STOPPED} if pause else {after, w.SERVICE_STOPPED, w.SERVICE_PAUSED}
    status = _wait(win32, name, ends, timeout)
    _print(name, status)
    if status.state == w.SERVICE_PAUSED and not pause:
        _fail(f"{name} is still PAUSED: it could not accept again (resume.failed in its log "
              f"{_log_file(win32, name)}); continue again once that is fixed", ExitCode.ERROR)
    if status.state != after:
        sys.exit(ExitCode.ERROR)


def _log_file(win32: w.Win32, name: str) -> str:
    """The service's log file, read from its command line."""
    try:
        host = parse_host_args(host_tail(_call(win32.query_service_command, name)))
    except GracefulError:
        return "(see graceful service status)"
    return str(host.log_file) if host.log_file else "(see graceful service status)"


@service.command()
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="SECONDS for the stop, and again for the start.")
@click.pass_obj
def restart(win32: w.Win32, name: str, timeout: float) -> None:
    """Restart service NAME through the SCM: stop it (with its drain), then start it.

    Connections that arrive between the stop's listener close and the new process's bind
    are refused: with --workers 2 or more, `service reload` replaces the workers instead,
    refusing none.
    Exit 0 once it runs again; 1 when it did not stop or did not start in time. A stop that
    exited with a code of its own (3, 4...) is printed, and the start goes on."""
    if _call(win32.query_service, name).state != w.SERVICE_STOPPED:
        stopped = _stop(win32, name, timeout)
        if stopped.state != w.SERVICE_STOPPED:
            _fail(f"{name} did not stop within {timeout:g}s", ExitCode.ERROR)
        if (code := _service_exit_code(stopped)) != ExitCode.OK:
            click.echo(f"{name}: the stop exited with {code}")
    _start_and_wait(win32, name, timeout)


@service.command()
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="SECONDS to wait for the outcome (set it above --restart-timeout).")
@click.pass_obj
def reload(win32: w.Win32, name: str, timeout: float) -> None:
    """Replace the workers of running service NAME without a gap: new workers start from
    a fresh interpreter (new code, the options on the service's command line now), and each
    is ready before an old one drains. The service's process stays; nothing is refused.
    Sends graceful's SCM control 129 (any SCM client may: `sc control NAME 129`) and reads
    the outcome in the service's log. Needs --workers 2 or more (a one-worker service
    serves in its own process: `service restart`).

    \b
    Exit codes: 0 the new workers serve; 1 the reload failed (the reason is printed; the
    old workers serve on), or no outcome within --timeout; 2 the service cannot reload."""
    from graceful.windows.service_reload import reload_service

    reload_service(win32, name, timeout)


@service.command()
@click.argument("name")
@click.pass_obj
def status(win32: w.Win32, name: str) -> None:
    """Print the state of service NAME and the options it runs with."""
    _print(name, _call(win32.query_service, name))
    argv = _call(win32.query_service_command, name)
    try:
        host = parse_host_args(host_tail(argv))
        serve = parse_serve(host.serve, environ=False)
    except GracefulError as err:
        click.echo(f"  command: {w.ServiceSpec(name, '', '', tuple(argv)).command_line}")
        click.echo(f"  its options cannot be read (the next start fails): {err}")
        return
    options = " ".join(f"{k}={v}" for k, v in dataclasses.asdict(serve.config).items())
    click.echo(f"  serve {serve.target} {options}")
    if serve.config_file:
        click.echo(f"  config {serve.config_file} (read at each start; options above as "
                   "it reads now)")
    click.echo(f"  stop budget {serve.config.stop_budget:g}s, app dir {host.app_dir}, "
               f"logs {host.log_file or log_file_for(host.name, serve.config)}")
    for line in scm_text.config_lines(_call(win32.query_service_config, name),
                                      _call(win32.query_service, name)):
        click.echo(line)


def _stop(win32: w.Win32, name: str, timeout: float) -> w.ServiceStatus:
    """Send STOP and wait for STOPPED. A stop already under way (the SCM refuses a second
    STOP while STOP_PENDING: Win32 error 1061, 1062 under Wine) is waited for instead: its
    outcome is ours."""
    status = _call(win32.query_service, name)
    if status.state != w.SERVICE_STOP_PENDING:
        try:
            status = win32.control_service(name, w.SERVICE_CONTROL_STOP)
        except w.Win32Error as err:
            status = _call(win32.query_service, name)
            if err.winerror == w.ERROR_SERVICE_NOT_ACTIVE and status.state == w.SERVICE_STOPPED:
                _print(name, status)  # it stopped between our query and our control
                return status
            if status.state != w.SERVICE_STOP_PENDING:  # Wine answers 1062 there
                _fail(str(err), ExitCode.ERROR)
            _under_way(name)
    else:
        _under_way(name)
    _print(name, status)
    status = _wait(win32, name, {w.SERVICE_STOPPED}, timeout)
    _print(name, status)
    return status


def _under_way(name: str) -> None:
    click.echo(f"{name}: a stop is already under way (STOP_PENDING); waiting for it")


def _service_exit_code(status: w.ServiceStatus) -> int:
    """graceful's exit code, from a STOPPED status."""
    if status.state != w.SERVICE_STOPPED:
        return ExitCode.ERROR
    if status.win32_exit_code == w.ERROR_SERVICE_SPECIFIC_ERROR:
        return status.service_exit_code if 0 < status.service_exit_code < 256 else ExitCode.ERROR
    return ExitCode.ERROR if status.win32_exit_code else ExitCode.OK


def _wait(win32: w.Win32, name: str, states: set[int], timeout: float) -> w.ServiceStatus:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        status = _call(win32.query_service, name)
        if status.state in states or time.monotonic() >= deadline:
            return status
        if status != last and status.state in (w.SERVICE_STOP_PENDING,
                                               w.SERVICE_PAUSE_PENDING):
            _print(name, status)
        last = status
        time.sleep(POLL_S)


def _print(name: str, status: w.ServiceStatus) -> None:
    click.echo(scm_text.status_line(name, status))


def _environment(pairs: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    env = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _fail(f"--env {pair!r}: expected KEY=VALUE", ExitCode.USAGE)
        env.append((key, value))
    return tuple(env)


def _check_target(target: str, app_dir: str) -> None:
    from graceful.lifecycle import loader

    try:  # from the service's folder, not the installing shell's (which may not exist)
        loader.import_target(target, app_dir)
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(os.path.abspath(app_dir))


def _call(func: Any, *args: Any) -> Any:
    try:
        return func(*args)
    except w.Win32Error as err:
        _fail(str(err), ExitCode.ERROR)


def _usage(message: str) -> GracefulError:
    from graceful.errors import ConfigError

    return ConfigError(message)


def _fail(message: str, code: int) -> Any:
    click.echo(f"graceful service: error: {message}", err=True)
    sys.exit(int(code))
