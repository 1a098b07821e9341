"""`--config PATH`: a TOML file whose keys are named like the options (`drain-timeout = 15`).

The file fills click's `default_map`, so a value is taken from, in order: the flag, its
`GRACEFUL_*` environment variable, the file, the default. Every key is checked here, once,
against the option it names: an unknown key, a wrong TOML type or a value out of range is
an error naming the key and the file.
"""

from __future__ import annotations

import os
from typing import Any

import click

from graceful.errors import ConfigError

NOT_IN_FILE = {"within"}  # graceful check's own: the file is the service's, for serve too
META = "graceful.cli.config_file"  # ctx.meta: (the path, each option's key as the file writes it)
HELP = ("TOML file of options, keys named like the options (drain-timeout = 15). "
        "Precedence: flag > GRACEFUL_* environment variable > this file > default.")


class FileError(click.ClickException):
    """A --config file that cannot be used: one line, exit 2, on the command line; and a
    ClickException to whoever reads the options again (a restart), with its reason."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"graceful: error: {self.message}", err=True)


def option() -> Any:
    """The eager `--config` option; its callback loads the file into ctx.default_map."""
    return click.option("--config", "config_file", envvar="GRACEFUL_CONFIG", show_envvar=True,
                        type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                        callback=_load_into_context, help=HELP)


def _load_into_context(ctx: click.Context, _param: click.Parameter, path: str | None) -> None:
    if not path:
        return
    keys: dict[str, str] = {}
    try:
        values = load(path, ctx.command.params, ctx, keys)
    except ConfigError as err:
        raise FileError(str(err)) from None
    ctx.default_map = {**(ctx.default_map or {}), **values}
    ctx.meta[META] = (os.fspath(path), keys)


def load(path: str | os.PathLike[str], params: list[click.Parameter],
         ctx: click.Context | None = None, keys: dict[str, str] | None = None
         ) -> dict[str, Any]:
    """The file's values by parameter name, each checked against its option; `keys` gets
    each parameter's key as the file writes it (`drain_timeout` or `drain-timeout`)."""
    import tomllib  # here: a serve without --config does not pay for it at start (2 ms)

    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as err:
        raise ConfigError(f"cannot read config file {os.fspath(path)}: "
                          f"{err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {os.fspath(path)} is not valid TOML: {err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {os.fspath(path)} is not UTF-8 text (TOML is): byte "
                          f"{err.object[err.start]:#04x} at offset {err.start}") from err
    by_key = {_key(p): p for p in params
              if isinstance(p, click.Option) and p.expose_value and p.name
              and p.name not in NOT_IN_FILE}
    values: dict[str, Any] = {}
    written: dict[str, str] = {} if keys is None else keys
    for key, value in data.items():
        param = by_key.get(key.replace("_", "-"))
        if param is None or param.name is None:
            raise ConfigError(f"{os.fspath(path)}: unknown key {key!r} (keys are named like "
                              "the options of `graceful serve --help`)")
        if param.name in written:  # TOML sees two keys; taking the later would hide one
            raise ConfigError(f"{os.fspath(path)}: keys {written[param.name]!r} and {key!r} "
                              f"both set {_key(param)}; keep one")
        written[param.name] = key
        values[param.name] = _checked(path, key, param, value, ctx)
    return values


def _key(param: click.Option) -> str:
    long = [o for o in param.opts if o.startswith("--")] or param.opts
    return long[0].lstrip("-")


def _checked(path: str | os.PathLike[str], key: str, param: click.Option, value: Any,
             ctx: click.Context | None) -> Any:
    where = f"{os.fspath(path)}: key {key!r}"
    items = value if param.multiple and isinstance(value, list) else [value]
    expected = _python_types(param)
    for item in items:
        if not isinstance(item, expected) or (isinstance(item, bool) and bool not in expected):
            names = " or ".join(_TOML_NAMES[t] for t in expected)
            raise ConfigError(f"{where} must be {names}"
                              f"{' (or a list of them)' if param.multiple else ''}, "
                              f"got {_toml_type(item)} {item!r}")
    try:
        converted = [param.type.convert(item, param, ctx) for item in items]
    except click.BadParameter as err:
        raise ConfigError(f"{where}: {err.message}") from err
    return converted if param.multiple else converted[0]


_TOML_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}


def _python_types(param: click.Option) -> tuple[type, ...]:
    kind = param.type
    if param.is_flag or isinstance(kind, click.types.BoolParamType):
        return (bool,)
    if isinstance(kind, click.types.IntParamType):  # IntRange too
        return (int,)
    if isinstance(kind, click.types.FloatParamType):  # FloatRange too
        return (int, float)
    return (str,)


def _toml_type(value: Any) -> str:
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return _TOML_NAMES[kind].split(" ", 1)[1]
    return type(value).__name__
