"""The application's state that survives a stop: who creates it, and where it lives.

One state per process, on the root application, a plain dict of JSON values:

- `graceful.state(app)` in a factory, or `graceful.state(request)` in a handler, returns
  it whoever serves the app (graceful, web.run_app, pytest-aiohttp's aiohttp_client),
  creating an empty one when nobody has. From a sub-application's request it reaches the
  root application's state (request.config_dict looks through the parent apps).
- A factory may also create it itself, `app[graceful.STATE] = {"hits": 0}`, and keep a
  reference to it: graceful keeps that very dict.

At start graceful merges the restored keys into the app's dict (restored values win over
the factory's initial values; keys the file does not have keep their initial value) and
gives every sub-application the root's dict. It never replaces a dict the app holds: a
sub-application holding a dict of its own is refused at start (ConfigError).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from aiohttp import web

from graceful.errors import ConfigError, kind_of

# `app[graceful.STATE]`: a dict of JSON values, restored from the checkpoint at start and
# flushed at stop (and every --checkpoint-interval). Mutate it from handlers on the loop.
STATE: web.AppKey[dict[str, Any]] = web.AppKey("graceful.state", dict)

# States created for an app that was already running (a handler under web.run_app asking
# first): aiohttp warns when a started app's mapping changes, so they live beside it.
_LATE: weakref.WeakKeyDictionary[web.Application, dict[str, Any]] = weakref.WeakKeyDictionary()


def state(holder: web.Application | web.Request) -> dict[str, Any]:
    """The state of `holder`'s application (for a request: of the nearest app that has one,
    else of the root application), created empty when there is none yet."""
    if isinstance(holder, web.Request):
        found = holder.config_dict.get(STATE)
        if found is not None:
            return found
        app = holder.match_info.apps[0]  # the root application
    else:
        app = holder
    found = app.get(STATE)
    if found is None:
        found = _LATE.get(app)
    if found is None:
        found = {}
        if app.frozen:
            _LATE[app] = found
        else:
            app[STATE] = found
    return found


def adopt(app: web.Application, restored: Mapping[str, Any]) -> dict[str, Any]:
    """The process's state, once the factory has returned: the root app's own dict (or a
    new one), the restored keys merged into it, shared with every sub-application."""
    own = app.get(STATE)
    if own is None:
        own = {}
        app[STATE] = own
    elif type(own) is not dict:
        raise ConfigError(f"app[graceful.STATE] is {kind_of(own)}, not a dict")
    own.update(restored)
    for where, subapp in _subapps(app):
        theirs = subapp.get(STATE)
        if theirs is None:
            subapp[STATE] = own
        elif theirs is not own:
            raise ConfigError(
                f"the sub-application at {where} has an app[graceful.STATE] of its own; "
                "the state lives on the root application: call graceful.state(request) in "
                "its handlers (or give it the root's dict)")
    return own


def _subapps(app: web.Application, under: str = "") -> Iterator[tuple[str, web.Application]]:
    for resource in app.router.resources():
        info = resource.get_info()
        subapp = info.get("app")
        if isinstance(subapp, web.Application):
            where = under + str(info.get("prefix") or info.get("rule") or "?")
            yield where, subapp
            yield from _subapps(subapp, where)
