"""The options of `graceful serve`, one for each Config field, with Config's defaults (one
source: the Config dataclass), and the serve arguments read as `graceful serve` reads them
(the Windows service host and `graceful service` read them too)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from graceful.config import LOG_FORMATS, LOG_LEVELS, LOOPS, Config
from graceful.errors import ConfigError

SECONDS = click.FloatRange(min=0)
DEFAULTS = {field.name: field.default for field in dataclasses.fields(Config)}

F = TypeVar("F", bound=Callable[..., Any])


def _option(name: str, **kwargs: Any) -> Callable[[F], F]:
    """A serve option that also reads GRACEFUL_<NAME> from the environment; its default is
    the Config field's of the same name."""
    field = name.split("/")[0].lstrip("-").replace("-", "_")
    kwargs.setdefault("default", DEFAULTS[field])
    return click.option(name, envvar="GRACEFUL_" + field.upper(), show_envvar=True,
                        show_default=True, **kwargs)


_OPTIONS = [
    click.argument("target", metavar="MODULE:ATTR"),
    _option("--host", help="Address to listen on."),
    _option("--port", type=click.IntRange(0, 65535),
            help="Port to listen on; 0 picks a free one (see the server.started log line)."),
    _option("--drain-timeout", type=SECONDS,
            help="SECONDS in-flight requests get to finish once the listeners close."),
    _option("--pre-stop-delay", type=SECONDS,
            help="SECONDS to keep accepting after a stop request, readiness already 503."),
    _option("--cancel-grace", type=SECONDS,
            help="SECONDS cancelled handlers get to unwind after the drain deadline."),
    _option("--startup-timeout", type=SECONDS,
            help="SECONDS each on_startup handler gets before the start fails."),
    _option("--hook-timeout", type=SECONDS, help="SECONDS each shutdown hook gets."),
    _option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
            help="File that keeps app[graceful.STATE] across restarts."),
    _option("--checkpoint-interval", type=click.FloatRange(min=0, min_open=True),
            help="Also flush the checkpoint every SECONDS while serving."),
    _option("--checkpoint-timeout", type=SECONDS,
            help="SECONDS reserved for the final checkpoint flush."),
    _option("--loop", type=click.Choice(LOOPS),
            help="Event loop; auto takes uvloop (POSIX) or winloop (Windows) when installed."),
    _option("--log-format", type=click.Choice(LOG_FORMATS),
            help="auto: console on a terminal, JSON lines otherwise."),
    _option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False)),
    _option("--access-log/--no-access-log", help="Log every request."),
    _option("--health/--no-health",
            help="Answer the liveness and readiness paths before the app's middlewares and "
                 "routes; --no-health leaves every path to the app."),
    _option("--livez-path", help="Liveness path."),
    _option("--readyz-path", help="Readiness path (503 once stopping)."),
    _option("--backlog", type=click.IntRange(min=1), help="Listen backlog."),
    _option("--websocket-close-reason",
            help="Reason text of the close (1001) sent to websockets at a stop."),
    _option("--websocket-close-timeout", type=SECONDS,
            help="SECONDS each websocket gets to answer its close before it is dropped."),
    _option("--termination-grace-period", type=SECONDS,
            help="Kubernetes' terminationGracePeriodSeconds: warn at start when the stop "
                 "budget exceeds it."),
    click.option("--app-dir", envvar="GRACEFUL_APP_DIR", show_envvar=True, show_default=True,
                 type=click.Path(file_okay=False), default=".",
                 help="Folder to import MODULE from (put first on the import path)."),
]


def serve_options(func: F) -> F:
    """Add serve's argument and options to a click command, in their help order."""
    for decorator in reversed(_OPTIONS):
        func = decorator(func)
    return func


@click.command("serve")
@serve_options
def _parser(**options: Any) -> None:
    """serve's arguments, for reading them outside the serve command."""


@dataclasses.dataclass(frozen=True)
class Serve:
    """Serve arguments read as `graceful serve` reads them."""

    target: str
    config: Config
    app_dir: str | None  # serve's own --app-dir, when given
    # Every option that is not a default, from the command line or the environment, as
    # arguments (paths absolute): what the service's command line carries.
    options: list[str]


def parse_serve(args: Sequence[str], *, environ: bool = True) -> Serve:
    """The serve arguments as `graceful serve` reads them; with environ=False, GRACEFUL_*
    environment variables are not read (the service host, `service status`)."""
    try:
        with contextlib.nullcontext() if environ else _without_graceful_env():
            ctx = _parser.make_context("graceful serve", list(args))
        params = dict(ctx.params)
        target = params.pop("target")
        app_dir = params.pop("app_dir")
        params["log_level"] = params["log_level"].lower()
        if params["checkpoint"] is not None:
            params["checkpoint"] = Path(os.path.abspath(params["checkpoint"]))
        config = Config(**params)
    except click.ClickException as err:
        raise ConfigError(f"serve arguments: {err.format_message()}") from None
    given = ctx.get_parameter_source("app_dir") is not ParameterSource.DEFAULT
    return Serve(target, config, os.path.abspath(app_dir) if given else None,
                 _explicit_options(ctx, config))


def _explicit_options(ctx: click.Context, config: Config) -> list[str]:
    out: list[str] = []
    for param in ctx.command.params:
        name = param.name or ""
        if not isinstance(param, click.Option) or name == "app_dir" \
                or ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, None):
            continue
        value = getattr(config, name)
        if param.is_flag:
            out.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            out += [param.opts[0], _text(value)]
    return out


def _text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@contextlib.contextmanager
def _without_graceful_env() -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("GRACEFUL_")}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)
