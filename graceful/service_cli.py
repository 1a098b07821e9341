"""`graceful service ...`: install graceful as a Windows service and control it.

Every SCM call goes through the Win32 seam (`ctx.obj`, the real one unless a test passes a
fake), so this module runs on Linux in the tests; on a real Linux command line it says that
it is Windows only and exits 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from graceful.bridge import win32 as w
from graceful.config import Config
from graceful.errors import ExitCode, GracefulError

STARTUPS = {"auto": (w.SERVICE_AUTO_START, False), "delayed": (w.SERVICE_AUTO_START, True),
            "manual": (w.SERVICE_DEMAND_START, False)}
HOST_MODULE = "graceful.bridge.windows_service"
# The SCM waits this much longer than our stop budget before it gives up on PRESHUTDOWN.
PRESHUTDOWN_SLACK_S = 5.0
POLL_S = 0.25


def parse_serve(args: Sequence[str]) -> tuple[str, Config]:
    """The serve arguments as `graceful serve` reads them: (MODULE:ATTR, Config)."""
    from graceful.cli import serve

    try:
        ctx = serve.make_context("graceful serve", list(args))
    except click.ClickException as err:
        raise _usage(f"serve arguments: {err.format_message()}") from None
    params = dict(ctx.params)
    target = params.pop("target")
    params.pop("app_dir")  # the service host has its own --app-dir
    params["log_level"] = params["log_level"].lower()
    return target, Config(**params)


def log_file_for(name: str, config: Config) -> Path:
    """Where a service logs when not told: next to its checkpoint, else under ProgramData."""
    if config.checkpoint is not None:
        return config.checkpoint.parent / f"{name}.log"
    base = os.environ.get("PROGRAMDATA") or tempfile.gettempdir()
    return Path(base) / "graceful" / f"{name}.log"


def host_command(name: str, serve_args: Sequence[str], *, app_dir: str,
                 log_file: Path | None = None) -> list[str]:
    """The command line the SCM runs. In a venv, the venv's python.exe is a launcher that
    starts the real interpreter as a child, which then cannot reach the SCM (error 1063):
    run the base interpreter and add the venv's site-packages (with its .pth files)."""
    tail = [name, "--app-dir", app_dir]
    tail += ["--log-file", str(log_file)] if log_file else []
    tail += ["--", *serve_args]
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
              help="JSON log, rotated by size; default: next to the checkpoint.")
@click.option("--app-dir", type=click.Path(file_okay=False, exists=True),
              help="Folder the MODULE is imported from; default: the current one.")
@click.argument("serve_args", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_obj
def install(win32: w.Win32, name: str, display_name: str | None, description: str,
            startup: str, restart_on_failure: float | None, log_file: Path | None,
            app_dir: str | None, serve_args: tuple[str, ...]) -> None:
    """Install service NAME that runs `graceful serve SERVE_ARGS` (after a `--`)."""
    app_dir = os.path.abspath(app_dir or os.getcwd())
    try:
        target, config = parse_serve(serve_args)
        _check_target(target, app_dir)
    except GracefulError as err:
        _fail(f"cannot install {name}: {err}", err.exit_code)
    start_type, delayed = STARTUPS[startup]
    command = host_command(name, serve_args, app_dir=app_dir,
                           log_file=log_file.resolve() if log_file else None)
    spec = w.ServiceSpec(
        name=name, display_name=display_name or f"graceful {name}",
        description=description or f"graceful serve {target}",
        command_line=subprocess.list2cmdline(command), start_type=start_type,
        delayed_start=delayed, restart_delay_s=restart_on_failure,
        preshutdown_timeout_ms=int((config.stop_budget + PRESHUTDOWN_SLACK_S) * 1000))
    _call(win32.create_service, spec)
    click.echo(f"installed {name}: {spec.command_line}")
    click.echo(f"  stop budget {config.stop_budget:g}s, preshutdown timeout "
               f"{spec.preshutdown_timeout_ms} ms, logs {log_file or log_file_for(name, config)}")


@service.command()
@click.argument("name")
@click.pass_obj
def remove(win32: w.Win32, name: str) -> None:
    """Remove service NAME (stop it first)."""
    _call(win32.delete_service, name)
    click.echo(f"removed {name}")


@service.command()
@click.argument("name")
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True)
@click.pass_obj
def start(win32: w.Win32, name: str, timeout: float) -> None:
    """Start service NAME and wait until it runs."""
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
    """Stop service NAME and wait until it has drained and stopped."""
    _print(name, _call(win32.control_service, name, w.SERVICE_CONTROL_STOP))
    status = _wait(win32, name, {w.SERVICE_STOPPED}, timeout)
    _print(name, status)
    sys.exit(0 if status.state == w.SERVICE_STOPPED else ExitCode.ERROR)


@service.command()
@click.argument("name")
@click.pass_obj
def status(win32: w.Win32, name: str) -> None:
    """Print the state of service NAME."""
    _print(name, _call(win32.query_service, name))


def _wait(win32: w.Win32, name: str, states: set[int], timeout: float) -> w.ServiceStatus:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        status = _call(win32.query_service, name)
        if status.state in states or time.monotonic() >= deadline:
            return status
        if status != last and status.state == w.SERVICE_STOP_PENDING:
            _print(name, status)
        last = status
        time.sleep(POLL_S)


def _print(name: str, status: w.ServiceStatus) -> None:
    line = f"{name}: {status.state_name}"
    if status.pid:
        line += f" pid={status.pid}"
    if status.checkpoint or status.wait_hint_ms:
        line += f" checkpoint={status.checkpoint} wait_hint_ms={status.wait_hint_ms}"
    if status.win32_exit_code:
        line += f" win32_exit={status.win32_exit_code} exit_code={status.service_exit_code}"
    click.echo(line)


def _check_target(target: str, app_dir: str) -> None:
    from graceful import loader

    sys.path.insert(0, app_dir)
    try:
        loader.import_target(target)
    finally:
        sys.path.remove(app_dir)


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
