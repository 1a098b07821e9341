"""What graceful relies on inside aiohttp, checked against the aiohttp that is installed.

REQUIREMENTS below lists every private attribute, method, signature and behaviour of aiohttp
that graceful uses, and why. `check()` verifies each one against the installed aiohttp and
returns a line per thing that moved (tests/test_aiohttp_canary.py runs it on every aiohttp
of the CI matrix, scripts/test-matrix). `ensure_supported()` runs at the start of
`graceful serve` and `graceful.run`: an aiohttp outside SUPPORTED, or one whose names or
signatures moved, is a one-line ConfigError (exit 2) rather than an AttributeError at the
first connection or in the middle of a stop. At start only the names and signatures are
checked (a few microseconds each); the behaviour probes, which drive a RequestHandler over
a fake transport, run in the canary.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import inspect
import re
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp

from graceful.errors import ConfigError

# Keep equal to pyproject's dependency (a test compares them): the minors scripts/test-matrix
# runs the canary and the end-to-end tests on.
SUPPORTED = ">=3.11,<3.15"

_HANDLER = "aiohttp.web_protocol.RequestHandler"
_REQUEST = "aiohttp.web_request.BaseRequest"


@dataclasses.dataclass(frozen=True)
class Requirement:
    owner: str  # a class (module.Class), or what a behaviour is about
    name: str  # attribute or method name; for a behaviour, what must hold
    kind: str  # "attribute", "method" (params must be accepted), "class" or "behaviour"
    why: str
    params: tuple[str, ...] = ()
    coroutine: bool | None = None  # a method graceful overrides: must stay (not) async


def _attr(owner: str, name: str, why: str) -> Requirement:
    return Requirement(owner, name, "attribute", why)


def _method(owner: str, name: str, params: tuple[str, ...], why: str,
            coroutine: bool | None = None) -> Requirement:
    return Requirement(owner, name, "method", why, params, coroutine)


def _behaviour(owner: str, name: str, why: str) -> Requirement:
    return Requirement(owner, name, "behaviour", why)


REQUIREMENTS: tuple[Requirement, ...] = (
    # -- the connection: protocol.DrainingRequestHandler subclasses RequestHandler ------------
    _method(_HANDLER, "__init__", ("manager", "loop", "access_log_class", "access_log"),
            "runtime.py builds each connection's handler itself: "
            "DrainingRequestHandler(runner.server, loop=, access_log_class= | access_log=None)"),
    _attr(_HANDLER, "_messages", "requests parsed and queued behind the one in progress "
          "(pipelining): not idle, and the response must not say Connection: close"),
    _attr(_HANDLER, "_waiter", "set exactly while aiohttp waits for the next request: a "
          "connection is quiet (closable by the drain) only then"),
    _attr(_HANDLER, "_request_in_progress", "True from the handler's start until its response "
          "is written: which connections have a request in flight"),
    _attr(_HANDLER, "_task_handler", "the connection's task, awaiting the handler: cancelled "
          "at the drain deadline, and kept when the client goes away (orphans)"),
    _attr(_HANDLER, "_request_factory", "replaced per connection to make requests of "
          "graceful's observed/tracked classes"),
    _attr(_HANDLER, "_request_count", "0 until a request has been parsed: a connection that "
          "never sent one gets NEW_CONNECTION_GRACE_S"),
    _attr(_HANDLER, "_handler_waiter", "a future aiohttp resolves when _handle_request ends: "
          "how cancel_request learns the cancelled handler has unwound"),
    _attr(_HANDLER, "_force_close", "read (never set) to know the connection is ending"),
    _attr(_HANDLER, "_close", "read (never set by the drain) to know the connection is ending"),
    _attr(_HANDLER, "_loop", "the loop, for the future cancel_request returns"),
    _attr(_HANDLER, "transport", "aborted at the drain deadline"),
    _method(_HANDLER, "data_received", ("data",), "counted: a byte received since the last "
            "response means the connection is not quiet", coroutine=False),
    _method(_HANDLER, "log_access", ("request", "response", "time"), "called once per request "
            "after its response is written: stamps the start of the quiet time",
            coroutine=False),
    _method(_HANDLER, "connection_made", ("transport",), "registers the connection"),
    _method(_HANDLER, "connection_lost", ("exc",), "unregisters it; the handler may outlive "
            "it"),
    _method(_HANDLER, "close", (), "cancel_request: nothing more is served on the connection"),
    _method(_HANDLER, "force_close", (), "closes a quiet idle connection"),
    # -- the request -------------------------------------------------------------------------
    _attr(_REQUEST, "_protocol", "a clone tells its connection it exists"),
    _method(_REQUEST, "clone", (), "overridden so that clones made by middlewares are "
            "tracked at the stop"),
    _method("aiohttp.web_request.Request", "_prepare_hook", ("response",), "overridden: runs "
            "after the Connection header is chosen and before the headers are written; sets "
            "Connection: close while stopping and registers websockets", coroutine=True),
    _method("aiohttp.web_app.Application", "_make_request",
            ("message", "payload", "protocol", "writer", "task", "_cls"),
            "the app's request factory; _cls makes requests of graceful's class directly"),
    _attr("aiohttp.web_server.Server", "request_factory", "runner.server.request_factory is "
          "the app's bound _make_request"),
    _attr("aiohttp.web_runner.AppRunner", "server", "the Server the runtime's handlers serve"),
    _method("aiohttp.abc.AbstractAccessLogger", "log", ("request", "response", "time"),
            "access.AccessLogger implements it as a plain method", coroutine=False),
    _attr("aiohttp.http_parser.RawRequestMessage", "upgrade", "websocket upgrades are made "
          "tracked from the start"),
    # -- health.py and hooks.py --------------------------------------------------------------
    _method("aiohttp.web_urldispatcher.DynamicResource", "_match", ("path",),
            "health.install refuses a probe path a dynamic route already catches"),
    Requirement("aiohttp.web_app.CleanupContext", "CleanupContext", "class",
                "hooks.bound_startup names a cleanup_ctx step by its bound method's owner"),
    # -- behaviours (probed over a fake transport by check(), not at start) ------------------
    _behaviour(_HANDLER, "_waiter is set while waiting for the next request",
               "the drain's quiet test; also again after a keep-alive response"),
    _behaviour(_HANDLER, "_request_in_progress is True while the handler runs",
               "requests in flight"),
    _behaviour(_HANDLER, "_messages holds the pipelined requests behind the running one",
               "Connection: close is not sent while requests are queued"),
    _behaviour(_HANDLER, "_request_count is 0 until a request is parsed",
               "never_used connections"),
    _behaviour(_HANDLER, "_request_factory is read from the instance for each request, "
               "called (message, payload, protocol, writer, task)", "observed/tracked requests"),
    _behaviour(_HANDLER, "_task_handler is the connection's task, running while its handler "
               "runs", "what the drain cancels, and what outlives a client that went away"),
    _behaviour(_HANDLER, "log_access is called once per request, after its response is "
               "written", "the quiet time starts there"),
    _behaviour(_REQUEST, "_prepare_hook runs before the headers are written, and a "
               "Connection: close set there is sent and closes the connection",
               "the stop's Connection: close"),
    _behaviour(_REQUEST, "clone() keeps _protocol", "clones are tracked"),
    _behaviour(_REQUEST, "a live request's __class__ can be switched to a subclass, and a "
               "request can be weakly referenced", "track_current_request at the stop"),
    _behaviour(_HANDLER, "_handler_waiter is resolved when a cancelled handler has unwound",
               "cancel_request"),
    _behaviour(_HANDLER, "force_close() on an idle connection closes its transport",
               "close_idle"),
    _behaviour("aiohttp.web_ws.WebSocketResponse", "close() before prepare() raises "
               "RuntimeError", "drain._going_away retries until the handshake is written"),
    _behaviour("aiohttp.web_app.Application", "cleanup_ctx runs as a bound method of a "
               "CleanupContext in on_startup", "hooks.bound_startup"),
    _behaviour("aiohttp.web_urldispatcher.DynamicResource", "_match(path) is not None for a "
               "path it routes, None otherwise", "health.install"),
)


def installed_version() -> str:
    return aiohttp.__version__


def supported_range() -> tuple[tuple[int, int], tuple[int, int]]:
    low, high = SUPPORTED.removeprefix(">=").split(",<")
    return _minor(low), _minor(high)


def in_range(version: str) -> bool:
    low, high = supported_range()
    return low <= _minor(version) < high


def ensure_supported() -> None:
    """Raise ConfigError (exit 2), one line, unless the installed aiohttp is in SUPPORTED
    and every name and signature graceful relies on is where it expects it."""
    _ensure(installed_version())


@functools.cache  # graceful serve and graceful.run both ask, in the same process
def _ensure(version: str) -> None:
    if not in_range(version):
        raise ConfigError(f"aiohttp {version} is installed; graceful supports "
                          f"aiohttp{SUPPORTED} (pip install 'aiohttp{SUPPORTED}')")
    moved = check(behaviours=False)
    if moved:
        raise ConfigError(f"aiohttp {version} is installed and its internals moved "
                          f"({'; '.join(moved)}); graceful supports aiohttp{SUPPORTED}")


def check(behaviours: bool = True) -> list[str]:
    """One line per requirement the installed aiohttp does not meet (empty: all met)."""
    moved = []
    for req in REQUIREMENTS:
        if req.kind != "behaviour":
            problem = _check_name(req)
            if problem:
                moved.append(f"{req.owner}.{req.name}: {problem} (needed: {req.why})")
    if behaviours:
        failed = _run_probes()
        for req in REQUIREMENTS:
            if req.kind == "behaviour" and req.name in failed:
                moved.append(f"{req.owner}: no longer true: {req.name}: {failed[req.name]} "
                             f"(needed: {req.why})")
        moved += [f"probe: {name}: {error}" for name, error in failed.items()
                  if not any(req.name == name for req in REQUIREMENTS)]
    return moved


# -- names and signatures --------------------------------------------------------------------


def _check_name(req: Requirement) -> str | None:
    module_name, _, class_name = req.owner.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return f"{req.owner} is gone"
    if req.kind == "class":
        return None
    if req.kind == "attribute":
        return None if _has_attribute(cls, req.name) else "attribute is gone"
    func = getattr(cls, req.name, None)
    if not callable(func):
        return "method is gone"
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return None  # a builtin without a signature: nothing to compare
    missing = [p for p in req.params if p not in params]
    if missing:
        return f"parameters {', '.join(missing)} are gone"
    if req.coroutine is not None and inspect.iscoroutinefunction(func) != req.coroutine:
        return "is now async" if not req.coroutine else "is no longer async"
    return None


def _has_attribute(cls: type, name: str) -> bool:
    """On the class (a slot, a method, a property, a namedtuple field) or assigned by one of
    its __init__ methods."""
    if hasattr(cls, name):
        return True
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        code = getattr(init, "__code__", None)
        if code is not None and name in code.co_names:
            return True
    return False


def _minor(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ConfigError(f"cannot read aiohttp's version {version!r}")
    return int(match[1]), int(match[2])


# -- behaviours ------------------------------------------------------------------------------


def _run_probes() -> dict[str, str]:
    """Drive aiohttp's RequestHandler over a fake transport; return {behaviour: what
    happened instead} for each that does not hold."""
    from graceful import aiohttp_probes  # imported only when probing

    failed: dict[str, str] = {}
    loop = asyncio.new_event_loop()
    try:
        for probe in aiohttp_probes.PROBES:
            _run_one(loop, probe, failed)
    finally:
        loop.close()
    return failed


def _run_one(loop: asyncio.AbstractEventLoop,
             probe: Callable[[dict[str, str]], Coroutine[Any, Any, None]],
             failed: dict[str, str]) -> None:
    try:
        loop.run_until_complete(asyncio.wait_for(probe(failed), 5))
    except Exception as err:  # a probe that crashes is itself a change to report
        failed[probe.__name__] = f"{type(err).__name__}: {err}"

