"""The options of `graceful serve`, one for each Config field, with Config's defaults (one
source: the Config dataclass), and the serve arguments read as `graceful serve` reads them
(the Windows service host and `graceful service` read them too)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from graceful.cli import config_file
from graceful.config import CLIENT_CERTS, LOG_FORMATS, LOG_LEVELS, LOOPS, Config
from graceful.errors import ConfigError


class Seconds(click.FloatRange):
    """A duration: a number of seconds in the range, and finite (nan passes every range
    check; inf would make a budget that never ends)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        seconds = super().convert(value, param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return seconds


SECONDS = Seconds(min=0)
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
    _option("--checkpoint-interval", type=Seconds(min=0, min_open=True),
            help="Also flush the checkpoint every SECONDS while serving."),
    _option("--checkpoint-timeout", type=SECONDS,
            help="SECONDS reserved for the final checkpoint flush."),
    _option("--loop", type=click.Choice(LOOPS),
            help="Event loop; auto takes uvloop (POSIX) or winloop (Windows) when installed, "
                 "and asyncio's selector loop in a Windows worker."),
    _option("--log-format", type=click.Choice(LOG_FORMATS),
            help="auto: console on a terminal, JSON lines otherwise."),
    _option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False)),
    _option("--access-log/--no-access-log", help="Log every request."),
    _option("--health/--no-health",
            help="Answer the liveness and readiness paths before the app's middlewares and "
                 "routes; --no-health leaves every path to the app."),
    _option("--livez-path", help="Liveness path."),
    _option("--readyz-path", help="Readiness path (503 once stopping)."),
    _option("--degraded-ready/--no-degraded-ready",
            help="With an optional startup check failing, readiness answers 200 "
                 "\"degraded\" (--no-degraded-ready: 503)."),
    _option("--backlog", type=click.IntRange(min=1), help="Listen backlog."),
    _option("--reuse-port/--no-reuse-port",
            help="Set SO_REUSEPORT on the TCP listeners, so that several processes can "
                 "listen on one port (as run_app's reuse_port)."),
    _option("--websocket-close-reason",
            help="Reason text of the close (1001) sent to websockets at a stop."),
    _option("--websocket-close-timeout", type=SECONDS,
            help="SECONDS each websocket gets to answer its close before it is dropped."),
    _option("--termination-grace-period", type=SECONDS,
            help="Kubernetes' terminationGracePeriodSeconds: warn at start when the stop "
                 "budget exceeds it."),
    _option("--restart-timeout", type=SECONDS,
            help="SECONDS a restart's new workers (SIGHUP, graceful restart) get to be "
                 "ready before they are ended and the old ones serve on."),
    _option("--workers", type=click.IntRange(min=1),
            help="Worker processes serving the listeners behind the supervisor, each "
                 "draining at a stop; one with --checkpoint."),
    _option("--reload/--no-reload",
            help="Development: restart the workers when a file under the app's folder "
                 "changes. Needs the watchfiles package."),
    _option("--pid-file", type=click.Path(dir_okay=False, path_type=Path),
            help="Write the supervisor's pid here once serving (it never changes)."),
    _option("--metrics-bind", metavar="HOST:PORT",
            help="Serve Prometheus metrics on /metrics at HOST:PORT, a listener of its own "
                 "that stays up through the stop (the metrics extra)."),
    _option("--metrics-default-registry/--no-metrics-default-registry",
            help="Serve prometheus_client's default registry on /metrics too: the process "
                 "collector and the app's own metrics; --no-metrics-default-registry serves "
                 "graceful's alone."),
    click.option("--app-dir", envvar="GRACEFUL_APP_DIR", show_envvar=True, show_default=True,
                 type=click.Path(file_okay=False), default=".",
                 help="Folder to import MODULE from (put first on the import path)."),
    _option("--bind", multiple=True, metavar="ADDRESS",
            help="Listen on ADDRESS: HOST:PORT, [V6]:PORT or unix:PATH; repeatable. Given "
                 "(or --fd), --host and --port are not used. Env: space-separated."),
    _option("--fd", type=click.IntRange(min=0), multiple=True, metavar="N",
            help="Serve the listening socket the parent opened on descriptor N; repeatable."),
    _option("--unix-socket-mode", metavar="OCTAL",
            help="File mode of unix: sockets (600, 660); default: the umask's."),
    _option("--ssl-certfile", type=click.Path(dir_okay=False),
            help="Serve HTTPS with this PEM certificate (chain)."),
    _option("--ssl-keyfile", type=click.Path(dir_okay=False),
            help="PEM private key of the certificate (default: in --ssl-certfile)."),
    _option("--ssl-keyfile-password", help="Password of an encrypted key."),
    _option("--ssl-ca-certs", type=click.Path(dir_okay=False),
            help="PEM file of the CAs that sign client certificates."),
    _option("--ssl-client-cert", type=click.Choice(CLIENT_CERTS),
            help="Ask clients for a certificate signed by --ssl-ca-certs: optional or required."),
    config_file.option(),
]


def serve_options(func: F) -> F:
    """Add serve's argument and options to a click command, in their help order."""
    for decorator in reversed(_OPTIONS):
        func = decorator(func)
    return func


@functools.cache
def _parser() -> click.Command:
    """serve's arguments, for reading them outside the serve command (built when first asked
    for: `graceful serve` itself does not pay for a second set of options at start)."""

    @click.command("serve")
    @serve_options
    def parser(**options: Any) -> None:
        pass

    return parser


@dataclasses.dataclass(frozen=True)
class Serve:
    """Serve arguments read as `graceful serve` reads them."""

    target: str
    config: Config
    app_dir: str | None  # serve's own --app-dir, when given
    # Every option that is not a default, from the command line or the environment, as
    # arguments (paths absolute), and `--config FILE` rather than the values it gave: what
    # the service's command line carries (the service reads the file at each start).
    options: list[str]
    config_file: str | None = None  # --config (or GRACEFUL_CONFIG), absolute


def parse_serve(args: Sequence[str], *, environ: bool = True) -> Serve:
    """The serve arguments as `graceful serve` reads them; with environ=False, GRACEFUL_*
    environment variables are not read (the service host, `service status`)."""
    try:
        with contextlib.nullcontext() if environ else _without_graceful_env():
            ctx = _parser().make_context("graceful serve", list(args))
        params = dict(ctx.params)
        target = params.pop("target")
        app_dir = params.pop("app_dir")
        params["log_level"] = params["log_level"].lower()
        if params["checkpoint"] is not None:
            params["checkpoint"] = Path(os.path.abspath(params["checkpoint"]))
        for name in ("ssl_certfile", "ssl_keyfile", "ssl_ca_certs"):  # the service's cwd differs
            if params.get(name) is not None:
                params[name] = os.path.abspath(params[name])
        config = config_from(ctx, params)
    except config_file.FileError as err:
        raise ConfigError(err.format_message()) from None
    except click.ClickException as err:
        raise ConfigError(f"serve arguments: {err.format_message()}") from None
    given = ctx.get_parameter_source("app_dir") is not ParameterSource.DEFAULT
    path, _ = ctx.meta.get(config_file.META, (None, {}))
    path = os.path.abspath(path) if path else None
    options = _explicit_options(ctx, config)
    return Serve(target, config, os.path.abspath(app_dir) if given else None,
                 ["--config", path, *options] if path else options, path)


def config_from(ctx: click.Context, options: dict[str, Any]) -> Config:
    """Config(**options), its refusal naming each option as the user gave it (`user_name`)."""
    try:
        return Config(**options)
    except ConfigError as err:
        if not err.fields:
            raise
        message = err.naming(lambda field: user_name(ctx, field))
        path, keys = ctx.meta.get(config_file.META, (None, {}))
        if any(ctx.get_parameter_source(field) is ParameterSource.DEFAULT_MAP
               and field in keys for field in err.fields):
            message = f"{path}: {message}"
        raise ConfigError(message) from None


def user_name(ctx: click.Context, field: str) -> str:
    """A Config field as the user gave it: its flag, its environment variable or its key in
    the --config file; its flag when it was not given."""
    param = next((p for p in ctx.command.params if p.name == field), None)
    if not isinstance(param, click.Option):
        return field
    source = ctx.get_parameter_source(field)
    _, keys = ctx.meta.get(config_file.META, (None, {}))
    if source is ParameterSource.ENVIRONMENT and isinstance(param.envvar, str):
        return param.envvar
    if source is ParameterSource.DEFAULT_MAP and field in keys:
        return f"key {keys[field]!r}"
    return param.opts[0]


def _explicit_options(ctx: click.Context, config: Config) -> list[str]:
    out: list[str] = []
    for param in ctx.command.params:
        name = param.name or ""
        if not isinstance(param, click.Option) or not hasattr(config, name) \
                or not param.expose_value \
                or ctx.get_parameter_source(name) in (ParameterSource.DEFAULT, None,
                                                      ParameterSource.DEFAULT_MAP):
            continue  # DEFAULT_MAP: from the --config file, which is passed on itself
        value = getattr(config, name)
        if name == "unix_socket_mode":
            value = format(value, "o")  # Config keeps the number; the option reads octal
        if param.multiple:
            for item in value:
                out += [param.opts[0], _text(item)]
        elif param.is_flag:
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
