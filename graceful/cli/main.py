"""Command line only: parse, build Config, call the runtime, exit with its code."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

import click

from graceful.cli.entry import reserve_std_fds
from graceful.cli.in_process import exit_flushed, fail, fallback_stream, serve_in_process
from graceful.cli.serve_options import SECONDS, config_from, serve_options
from graceful.config import Config
from graceful.errors import ExitCode, GracefulError


class _OneLineErrors(click.Group):
    """Usage errors (a bad value, an unknown option) in one line, `graceful: error: ...`,
    exit 2, like every other error of the command line: click's own form takes four.
    `service`, `restart` and `bundle` are imported when asked for: `graceful serve` does not pay for
    them at start."""

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        with _one_line_usage_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        with _one_line_usage_errors():
            return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "bundle", "restart", "service"])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "service":
            from graceful.cli.service import service

            return service
        if name == "bundle":
            from graceful.windows.bundle_cli import bundle

            return bundle
        if name == "restart":
            from graceful.cli.restart import restart

            return restart
        return super().get_command(ctx, name)


@contextlib.contextmanager
def _one_line_usage_errors() -> Any:
    try:
        yield
    except click.UsageError as err:
        click.echo(f"graceful: error: {err.format_message()}", err=True)
        raise click.exceptions.Exit(ExitCode.USAGE) from err


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aiohttp-graceful")
def main() -> None:
    """Serve aiohttp applications and stop them without losing a request or state."""
    reserve_std_fds()  # again: a wrapper may call this group without entry.py


@main.command()
@serve_options
def serve(target: str, **options: Any) -> None:
    """Serve the aiohttp Application (or factory) MODULE:ATTR until stopped.

    \b
    On POSIX a supervisor (this process: its pid never changes) holds the listening
    sockets and runs --workers worker processes; SIGHUP or `graceful restart` replaces the
    workers without closing a socket.
    \b
    Exit codes: 0 stopped cleanly; 1 unexpected error; 2 usage or configuration error;
    3 work was cut: requests cancelled at the drain deadline (or a second stop), or threads
    still running at the end of the stop budget plus 1 s;
    4 checkpoint could not be written; 5 a shutdown hook failed or timed out.
    """
    if sys.platform == "win32":
        from graceful.bridge import default_bridge

        bridge = default_bridge()
        if hasattr(bridge, "capture"):
            bridge.capture()  # from here a stop signal is a clean stop, not a kill
        options["log_level"] = options["log_level"].lower()
        app_dir = options.pop("app_dir")
        config = _build(options)
        if config.workers == 1:  # in-process, as before workers: docs/deploying/windows.md
            serve_in_process(target, app_dir, config, bridge)
        _supervise_windows(target, app_dir, config, bridge)
    from graceful.supervisor.early import EarlySignals

    early = EarlySignals.capture()  # from here a stop signal is a clean stop, not a kill
    options["log_level"] = options["log_level"].lower()
    app_dir = options.pop("app_dir")
    config = _build(options)
    from graceful.http.aiohttp_range import ensure_installed_in_range

    try:
        ensure_installed_in_range()  # before any worker: one line, not one per worker
    except GracefulError as err:
        fail(err)
    from graceful.supervisor.start import start, wait_ready

    started = start(target, app_dir, config)  # the workers start now
    wait_ready(started, lambda: bool(early.received))  # and have the cores to themselves
    from graceful.lifecycle import imports

    with imports.structlog_without_extras():  # rich: 45-80 ms of the start, never used
        from graceful import logs
    from graceful.supervisor.output import TextOutput, output

    # through the writer thread its workers' lines take: a stalled reader never blocks us
    logs.configure(config.log_format, config.log_level, stream=TextOutput(output(2)),
                   fallback=fallback_stream())
    from graceful.cli.serve_options import parse_serve
    from graceful.supervisor.main import serve_args, supervise

    exit_flushed(supervise(started, lambda: parse_serve(serve_args()).config, early))


def _supervise_windows(target: str, app_dir: str | None, config: Config, bridge: Any) -> None:
    """Windows, --workers above 1: the supervisor in this process, the console's events
    (`bridge`, captured already) its stop requests."""
    from graceful.http.aiohttp_range import ensure_installed_in_range

    try:
        ensure_installed_in_range()  # before any worker: one line, not one per worker
    except GracefulError as err:
        fail(err)
    from graceful.supervisor.start import start

    started = start(target, app_dir, config)  # the workers start now
    from graceful import logs
    from graceful.lifecycle import budget

    logs.configure(config.log_format, config.log_level, fallback=fallback_stream())
    budget.check_at_start(config, budget.gather(windows_console=True))
    from graceful.cli.serve_options import parse_serve
    from graceful.supervisor.main import serve_args, supervise
    from graceful.supervisor.sources import ConsoleEvents

    exit_flushed(supervise(started, lambda: parse_serve(serve_args()).config,
                    sources=ConsoleEvents(bridge)))


@main.command(hidden=True)
@click.argument("target", metavar="MODULE:ATTR", required=False)
@click.option("--app-dir", type=click.Path(file_okay=False), default=".")
def worker(target: str | None, app_dir: str | None) -> None:
    """One worker of `graceful serve`'s supervisor (started by it, not by hand). Without
    MODULE:ATTR it is the early one, told what to serve once the supervisor knows. (The
    entry point runs it without click: graceful/cli/in_process.py.)"""
    from graceful.cli.in_process import worker as run_worker

    run_worker(target, app_dir)


@main.group()
def checkpoint() -> None:
    """Read checkpoint files."""


@checkpoint.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def show(path: Path) -> None:
    """Print the state held in PATH as JSON."""
    click.echo(json.dumps(_read_checkpoint(path).state, indent=2, sort_keys=True))


@checkpoint.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def verify(path: Path) -> None:
    """Exit 0 if PATH is a whole, untampered checkpoint; else 1 with the reason."""
    snapshot = _read_checkpoint(path)
    click.echo(f"ok: {path}: generation {snapshot.generation}, written "
               f"{snapshot.written_at.isoformat()}, {len(snapshot.state)} keys")


def _read_checkpoint(path: Path) -> Any:
    from graceful import checkpoint as ckpt

    try:
        return ckpt.read(path)
    except GracefulError as err:
        fail(err, ExitCode.ERROR)


def _build(options: dict[str, Any]) -> Config:
    try:
        return config_from(click.get_current_context(), options)
    except GracefulError as err:
        fail(err)


def _check(target: str, within: float | None, **options: Any) -> None:
    from graceful.cli import check
    from graceful.http import aiohttp_check
    from graceful.lifecycle import loader

    options["log_level"] = options["log_level"].lower()
    app_dir = options.pop("app_dir")
    config = _build(options)
    try:
        aiohttp_check.ensure_supported()
        check.build_app(loader.import_target(target, app_dir), config, name=target)
    except GracefulError as err:
        fail(err, ExitCode.USAGE)  # 1 says "does not fit --within"
    worst = check.worst_case(config)
    click.echo(f"stop budget of {target}, in seconds:")
    click.echo(check.render(check.budget_rows(config), worst))
    if within is not None:
        fits = worst <= within
        click.echo(f"{'ok' if fits else 'too long'}: the worst case, {worst:g} s, is "
                   f"{'within' if fits else 'more than'} --within {within:g} s")
        if not fits:
            exit_flushed(ExitCode.ERROR)


# `graceful check` takes every serve option (and --config), so it checks what serve would run.
main.add_command(click.Command(
    "check", callback=_check, params=[*serve.params, click.Option(
        ["--within"], type=SECONDS, default=None, metavar="SECONDS",
        help="Exit 1 when the worst case exceeds SECONDS (the supervisor's stop timeout: "
             "terminationGracePeriodSeconds, TimeoutStopSec, docker stop's timeout).")],
    help="Import MODULE:ATTR and build the app without serving it (no on_startup, no "
         "bind), validate the options, and print the stop budget: each phase and the worst "
         "case from the stop signal to the exit. Exit 2 when an option is refused or the "
         "app cannot be built (its factory raises)."))

@main.command()
@click.argument("logfile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--run", "run_number", type=click.IntRange(min=1), default=None,
              help="Which run of the file (1 is the first); default the last.")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also draw it to this PNG (needs matplotlib: the bench extra).")
def timeline(logfile: Path, run_number: int | None, png: Path | None) -> None:
    """Draw the stop of one run from its JSON log (--log-format json): phases with their
    durations and the requests in flight over time."""
    from graceful.cli import timeline as tl

    try:
        run = tl.load(logfile, run_number)
        click.echo(tl.render(run))
        if png is not None:
            click.echo(f"png: {tl.png(run, png)}")
    except tl.TimelineError as err:
        fail(err, ExitCode.ERROR)
    except GracefulError as err:
        fail(err)

