"""`MODULE:ATTR` to an aiohttp Application: an Application, or a sync or async factory."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from graceful.errors import ConfigError, kind_of

AppSource = web.Application | Callable[[], web.Application | Awaitable[web.Application]]

# Called with each Application build_app returns, before it is served: the pytest plugin's
# child process adds its marking middleware here (graceful/testing/child.py).
on_built: list[Callable[[web.Application], None]] = []


def import_target(target: str, app_dir: str | os.PathLike[str] | None = None) -> AppSource:
    """Import `MODULE:ATTR` (ATTR may be dotted); ConfigError names what is wrong.

    `app_dir` (default: the current folder) goes first on `sys.path`, as uvicorn, gunicorn
    and hypercorn do: the console script, unlike `python -m`, does not put it there.
    """
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{target!r} is not MODULE:ATTR (for example myapp.web:create_app)")
    put_first_on_path(app_dir)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and module_name.startswith(err.name):
            raise ConfigError(f"cannot import module {module_name!r}: no module named "
                              f"{err.name!r}") from err
        raise ConfigError(f"importing {module_name!r} failed: {err}") from err
    except Exception as err:
        raise ConfigError(f"importing {module_name!r} failed: {type(err).__name__}: {err}") from err
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as err:
            raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from err
    if not isinstance(obj, web.Application) and not callable(obj):
        raise ConfigError(f"{target} is {kind_of(obj)}, not an aiohttp Application "
                          "or a factory returning one")
    return obj


def put_first_on_path(app_dir: str | os.PathLike[str] | None = None) -> None:
    folder = os.path.abspath(app_dir if app_dir is not None else os.getcwd())
    if not os.path.isdir(folder):
        raise ConfigError(f"app folder {folder!r} does not exist")
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)


async def build_app(source: AppSource, name: str = "the factory") -> web.Application:
    """The Application itself, or what the factory returns (awaited if async)."""
    if isinstance(source, web.Application):
        app = source
    else:
        app = source()
        if inspect.isawaitable(app):
            app = await app
        if not isinstance(app, web.Application):
            raise ConfigError(f"{name} returned {type(app).__name__}, not an aiohttp Application")
    for hook in on_built:
        hook(app)
    return app
