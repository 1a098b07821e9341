"""The adapter for aiohttp's internals: the one module of graceful that touches a private
aiohttp name (aiohttp_probes.py aside, which probes them for the canary).

REQUIREMENTS below lists every private attribute, method, signature and behaviour of aiohttp
that graceful uses, and why; the functions after it are how the rest of graceful reaches
them (tests/test_aiohttp_adapter.py fails if a listed private name appears anywhere else).
aiohttp_check.py checks the list against the installed aiohttp: the canary in the tests and
the CI matrix, and the refusal of an unsupported aiohttp at start.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import types
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, web, web_app
from aiohttp.http_parser import RawRequestMessage
from aiohttp.web_protocol import RequestHandler

_HANDLER = "aiohttp.web_protocol.RequestHandler"
_REQUEST = "aiohttp.web_request.BaseRequest"
_WS = "aiohttp.web_ws.WebSocketResponse"


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


# What aiohttp calls the flag its parser raises when it has parsed an upgrade request
# (3.14: BaseProtocol._upgraded; 3.11 to 3.13: RequestHandler._upgrade).
UPGRADE_FLAG = "_upgraded" if hasattr(RequestHandler, "_upgraded") else "_upgrade"


REQUIREMENTS: tuple[Requirement, ...] = (
    # -- the connection: protocol.DrainingRequestHandler subclasses RequestHandler ------------
    _method(_HANDLER, "__init__", ("manager", "loop", "access_log_class", "access_log"),
            "runtime.py builds each connection's handler itself: "
            "DrainingRequestHandler(runner.server, loop=, access_log_class= | access_log=None)"),
    _attr(_HANDLER, "_messages", "requests parsed and queued behind the one in progress "
          "(pipelining): not idle, and the response must not say Connection: close; those "
          "data_received just parsed are checked against accounting.py's framing"),
    _attr(_HANDLER, "_waiter", "set exactly while aiohttp waits for the next request: a "
          "connection is quiet (closable by the drain) only then"),
    _attr(_HANDLER, "_request_in_progress", "True from the handler's start until its response "
          "is written: which connections have a request in flight"),
    _attr(_HANDLER, "_task_handler", "the connection's task, awaiting the handler: cancelled "
          "at the drain deadline, and kept when the client goes away (orphans)"),
    _attr(_HANDLER, "_request_factory", "replaced per connection to make requests of "
          "graceful's tracked class (of its websocket class once an upgrade is parsed)"),
    _attr(_HANDLER, "_current_request", "the request whose handler is running: what the "
          "drain reports and cuts, read only when it asks (nothing recorded per request)"),
    _attr(_HANDLER, UPGRADE_FLAG, "raised once an upgrade request is parsed: the "
          "connection's next requests are made of the class that shows websockets"),
    _attr(_HANDLER, "_request_count", "0 until a request has been parsed: a connection that "
          "never sent one gets NEW_CONNECTION_GRACE_S"),
    _attr(_HANDLER, "_handler_waiter", "a future aiohttp resolves when _handle_request ends: "
          "how cancel_request learns the cancelled handler has unwound"),
    _attr(_HANDLER, "_force_close", "read (never set) to know the connection is ending"),
    _attr(_HANDLER, "_close", "read (never set by the drain) to know the connection is ending"),
    _attr(_HANDLER, "_loop", "the loop, for the future cancel_request returns"),
    _attr(_HANDLER, "transport", "aborted at the drain deadline"),
    _method(_HANDLER, "data_received", ("data",), "a byte received since the last "
            "response means the connection is not quiet (and stamps a request's start)",
            coroutine=False),
    _method(_HANDLER, "log_access", ("request", "response", "time"), "called once per request "
            "after its response is written: stamps the start of the quiet time",
            coroutine=False),
    _method(_HANDLER, "connection_made", ("transport",), "registers the connection"),
    _method(_HANDLER, "connection_lost", ("exc",), "unregisters it; the handler may outlive "
            "it"),
    _method(_HANDLER, "close", (), "cancel_request, and a response under way at a stop: "
            "nothing more is served on the connection"),
    _method(_HANDLER, "force_close", (), "closes a quiet idle connection"),
    # -- the request -------------------------------------------------------------------------
    _attr(_REQUEST, "_protocol", "a clone tells its connection it exists"),
    _method(_REQUEST, "clone", (), "a clone (a middleware's request.clone()) is "
            "of the request's class, so tracked like it"),
    _method("aiohttp.web_request.Request", "_prepare_hook", ("response",), "overridden on "
            "graceful's request classes while a stop is in progress (and always on the "
            "websocket class): runs after the Connection header is chosen and before the "
            "headers are written; sets Connection: close and registers websockets",
            coroutine=True),
    _method("aiohttp.web_app.Application", "_make_request",
            ("message", "payload", "protocol", "writer", "task", "_cls"),
            "the app's request factory; _cls makes requests of graceful's class directly"),
    _attr("aiohttp.web_server.Server", "_kwargs", "the keyword arguments the runner gives each "
          "RequestHandler (keepalive_timeout, access_log, handler_args): graceful makes its "
          "handlers with the same"),
    _attr("aiohttp.web_server.Server", "request_factory", "runner.server.request_factory is "
          "the app's bound _make_request"),
    _attr("aiohttp.web_runner.AppRunner", "server", "the Server the runtime's handlers serve"),
    _method("aiohttp.abc.AbstractAccessLogger", "log", ("request", "response", "time"),
            "access.AccessLogger implements it as a plain method", coroutine=False),
    _attr("aiohttp.http_parser.RawRequestMessage", "upgrade", "websocket upgrades are made "
          "tracked from the start"),
    # -- websockets.py: the closing handshake of a handler waiting in receive() --------------
    _attr(_WS, "_waiting", "True while a receive() is pending (the usual `async for msg in "
          "ws`): close() would then end that receive and drop the connection at once, "
          "without the client's close frame, so graceful sends the frame itself"),
    _method(_WS, "_set_closed", (), "marks the websocket closed as close() does: the pending "
            "receive, given the client's close frame, does not send a second one"),
    _attr(_WS, "_writer", "its WebSocketWriter, whose close(code, message) sends the frame"),
    _method("aiohttp.http_websocket.WebSocketWriter", "close", ("code", "message"),
            "sends the close frame", coroutine=True),
    _method(_WS, "_set_code_close_transport", ("code",), "drops a client that never "
            "answered the close, with 1006, as close() does at its own timeout"),
    # -- health.py and hooks.py --------------------------------------------------------------
    _method("aiohttp.web_urldispatcher.DynamicResource", "_match", ("path",),
            "health.install refuses a probe path a dynamic route already catches"),
    Requirement("aiohttp.web_app.CleanupContext", "CleanupContext", "class",
                "hooks.bound_startup names a cleanup_ctx step by its bound method's owner"),
    _attr("aiohttp.web_app.CleanupContext", "_exits", "the cleanup_ctx entries entered so far: "
          "hooks.py exits them one at a time, each bounded"),
    _method("aiohttp.web_app.Application", "_reg_subapp_signals", ("subapp",),
            "its relay closure (SUBAPP_RELAY_QUALNAME) is how a sub-app's signals reach the "
            "parent: hooks.py runs the sub-app's handlers one at a time instead"),
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
               "called (message, payload, protocol, writer, task)", "tracked requests"),
    _behaviour(_HANDLER, "_task_handler is the connection's task, running while its handler "
               "runs", "what the drain cancels, and what outlives a client that went away"),
    _behaviour(_HANDLER, "log_access is called once per request, after its response is "
               "written", "the quiet time starts there"),
    _behaviour(_REQUEST, "_prepare_hook runs before the headers are written, and a "
               "Connection: close set there is sent and closes the connection",
               "the stop's Connection: close"),
    _behaviour(_HANDLER, "_current_request is the request while its handler runs",
               "which request is in flight, read when the drain asks"),
    _behaviour(_HANDLER, "start()'s local `request` is the request whose response is "
               "written after its handler returned", "the drain names a response still "
               "being written at its deadline (read then only)"),
    _behaviour(_HANDLER, "the upgrade flag is raised by data_received once an upgrade "
               "request is parsed, before the request is made", "websockets are registered"),
    _behaviour("aiohttp.web_app.Application", "a route whose match info ignores add_app "
               "runs without the app's middlewares", "the health probes: answered by the "
               "app's router, never seen by its middlewares"),
    _behaviour(_REQUEST, "clone() keeps _protocol", "clones are tracked"),
    _behaviour(_REQUEST, "a live request's __class__ can be switched to a subclass",
               "an Application subclass's own request factory: its request is made tracked "
               "as soon as it is made, before its handler sees it (never at the stop)"),
    _behaviour(_HANDLER, "_handler_waiter is resolved when a cancelled handler has unwound",
               "cancel_request"),
    _behaviour(_HANDLER, "force_close() on an idle connection closes its transport",
               "close_idle"),
    _behaviour("aiohttp.web_ws.WebSocketResponse", "close() before prepare() raises "
               "RuntimeError", "drain._going_away retries until the handshake is written"),
    _behaviour(_WS, "a receive() pending when the close frame is sent by hand returns "
               "the client's close frame, without a second close frame sent",
               "websockets.py: the closing handshake of the usual `async for` handler"),
    _behaviour("aiohttp.web_app.Application", "cleanup_ctx runs as a bound method of a "
               "CleanupContext in on_startup", "hooks.bound_startup"),
    _behaviour("aiohttp.web_urldispatcher.DynamicResource", "_match(path) is not None for a "
               "path it routes, None otherwise", "health.install"),
)


# -- the connection (protocol.DrainingRequestHandler) ------------------------------------------

# The closure aiohttp appends to a parent's signals for each sub-app (aiohttp/web_app.py).
SUBAPP_RELAY_QUALNAME = (
    "Application._reg_subapp_signals.<locals>.reg_handler.<locals>.handler")


def server_handler_kwargs(server: web.Server) -> dict[str, Any]:
    """The keyword arguments aiohttp's Server gives each RequestHandler it makes."""
    return dict(server._kwargs)


def set_request_factory(handler: RequestHandler, factory: Callable[..., web.BaseRequest]
                        ) -> None:
    """aiohttp calls `factory(message, payload, protocol, writer, task)` for each request."""
    handler._request_factory = factory


def factory_making(factory: Any, cls: type[web.BaseRequest]
                   ) -> Callable[..., web.BaseRequest] | None:
    """`factory` (a Server's request_factory) made to build `cls`, when it is aiohttp's own
    Application._make_request (which takes the class); None for an Application subclass's
    own factory.

    Made as aiohttp's own function with `cls` for its `_cls` default, bound to the same
    app: a request costs the very call aiohttp makes. (`functools.partial(factory,
    _cls=cls)` builds a keyword dict per call: 2,400 instructions a request, 1.4 % of one on
    uvloop, measured with valgrind's callgrind over bench/protocol_cost.py.)
    """
    func = getattr(factory, "__func__", None)
    if func is not web.Application._make_request:
        return None
    made = _with_default(func, "_cls", cls)
    if made is None:  # `_cls` without a default: passed by name then
        return functools.partial(factory, _cls=cls)
    return types.MethodType(made, factory.__self__)


@functools.cache  # one copy per class, not per connection
def _with_default(func: Any, name: str, value: Any) -> Any:
    """A copy of the plain function `func` whose parameter `name` defaults to `value`; None
    when `name` has no default to replace."""
    positional = [p.name for p in inspect.signature(func).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    defaults = list(func.__defaults__ or ())
    kwdefaults = dict(func.__kwdefaults__ or {})
    if name in kwdefaults:
        kwdefaults[name] = value
    else:  # the last len(defaults) positional parameters have the defaults
        first = len(positional) - len(defaults)
        at = positional.index(name) - first if name in positional else -1
        if at < 0:
            return None
        defaults[at] = value
    copy = types.FunctionType(func.__code__, func.__globals__, func.__name__, tuple(defaults),
                              func.__closure__)
    copy.__kwdefaults__ = kwdefaults or None
    copy.__qualname__ = func.__qualname__
    return copy


def set_class(request: web.BaseRequest, cls: type[web.BaseRequest]) -> None:
    """Make a request just made (by an app's own factory) of `cls`, a subclass of its class
    adding no slots; object.__setattr__ because aiohttp's DEBUG-mode Request.__setattr__
    warns on it."""
    object.__setattr__(request, "__class__", cls)


def request_in_progress(handler: RequestHandler) -> bool:
    return handler._request_in_progress


def current_request(handler: RequestHandler) -> web.BaseRequest | None:
    """The request whose handler is running (None once it has returned, while its response
    is still being written)."""
    return handler._current_request


def request_being_answered(handler: RequestHandler) -> web.BaseRequest | None:
    """The request of the response aiohttp is writing after its handler returned: a local
    of the connection task's start() (finish_response runs there, with _current_request
    already None). A frame's locals: read only when the drain asks, never per request."""
    task = handler._task_handler
    frame = getattr(task.get_coro(), "cr_frame", None) if task is not None else None
    request = frame.f_locals.get("request") if frame is not None else None
    return request if isinstance(request, web.BaseRequest) else None


def _upgraded(handler: RequestHandler) -> bool:
    return handler._upgraded  # type: ignore[attr-defined]


def _upgrade(handler: RequestHandler) -> bool:
    return handler._upgrade  # type: ignore[attr-defined]


# True once the connection's parser has seen an upgrade request. Called after every
# data_received: a plain attribute read (specialised by the interpreter), not
# operator.attrgetter, whose generic lookup missed CPython's type cache on every request.
upgrading: Callable[[RequestHandler], bool] = (_upgraded if UPGRADE_FLAG == "_upgraded"
                                               else _upgrade)


def queued_requests(handler: RequestHandler) -> int:
    """Pipelined requests already parsed and waiting behind the one in progress."""
    return len(handler._messages)


def last_parsed(handler: RequestHandler, count: int) -> list[Any]:
    """The `count` messages data_received has just parsed (queued last; the connection's
    task takes them only once data_received has returned)."""
    if not count:
        return []
    messages = handler._messages
    if count > len(messages):  # not what aiohttp does today: nothing to match them with
        return [None]
    if count == 1:
        return [messages[-1][0]]
    return [message for message, _payload in list(messages)[len(messages) - count:]]


def sole_request_complete(handler: RequestHandler) -> bool:
    """The one request queued is a request whose body has all arrived (none, or complete):
    llhttp ended it. (One queued: the parser was not paused for a full queue, which would
    keep whole requests behind it.)"""
    messages = handler._messages
    if len(messages) != 1:
        return False
    message, payload = messages[0]
    return type(message) is RawRequestMessage and payload.is_eof()


def waiting_for_request(handler: RequestHandler) -> bool:
    return handler._waiter is not None


def closing(handler: RequestHandler) -> bool:
    return bool(handler._force_close or handler._close)


def requests_parsed(handler: RequestHandler) -> int:
    return handler._request_count


def connection_task(handler: RequestHandler) -> asyncio.Task[None] | None:
    return handler._task_handler


def handler_unwound(handler: RequestHandler) -> asyncio.Future[None]:
    """A future aiohttp resolves when the handler running now has unwound."""
    waiter: asyncio.Future[None] = handler._loop.create_future()
    handler._handler_waiter = waiter
    return waiter


# -- the request -------------------------------------------------------------------------------


def showing_responses(cls: type[web.BaseRequest], name: str, module: str, *,
                      always: bool) -> type[web.BaseRequest]:
    """A subclass of `cls` (no new slots) that can show its responses to its connection's
    `tracker` (`tracker.preparing(request, response)`) before their headers are written:
    websockets always, others while `tracker.stopping`.

    With `always`, the hook is part of the class. Without, the class is `cls`'s own until
    show_responses(made, True): its requests then cost aiohttp's own path, not one
    Python call more per response."""
    # the app's own hook (never one of graceful's, even when `cls` is graceful's and shows)
    own = next(k for k in cls.__mro__ if not vars(k).get("_graceful_tracked"))
    base: Callable[[Any, web.StreamResponse], Awaitable[None]] = own._prepare_hook

    # Deliberately not `async`: it returns aiohttp's coroutine, so a response costs one
    # function call here rather than one more coroutine.
    def _prepare_hook(self: web.Request, response: web.StreamResponse) -> Awaitable[None]:
        tracker = self._protocol.tracker  # type: ignore[union-attr]
        if tracker.stopping or isinstance(response, web.WebSocketResponse):
            tracker.preparing(self, response)
        return base(self, response)

    namespace: dict[str, Any] = {"_graceful_tracked": True, "_graceful_hook": _prepare_hook,
                                 "__module__": module}
    if always:
        namespace["_prepare_hook"] = _prepare_hook
    return type(name, (cls,), namespace)


def show_responses(cls: type[web.BaseRequest], on: bool) -> None:
    """Put the hook of showing_responses(..., always=False) on `cls`, or take it off: the
    requests already made of `cls` see the change at their next response (aiohttp looks
    `_prepare_hook` up on the request each time)."""
    if on:
        type.__setattr__(cls, "_prepare_hook", vars(cls)["_graceful_hook"])
    elif "_prepare_hook" in vars(cls):
        type.__delattr__(cls, "_prepare_hook")


# -- websockets.py ---------------------------------------------------------------------------


def receiving(ws: web.WebSocketResponse) -> bool:
    """A receive() is pending on `ws` (its handler waits for the next message)."""
    return bool(ws._waiting)


async def send_close(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    """Send the close frame and mark `ws` closed, as close() does, but leave its pending
    receive() waiting: the next message it returns is the client's close frame, after which
    the handler returns. Raises ConnectionError when the connection is already gone."""
    ws._set_closed()
    writer = ws._writer
    assert writer is not None  # a pending receive() means prepare() is done
    await writer.close(code, message)


def drop(ws: web.WebSocketResponse) -> None:
    """Close the connection of a websocket whose client did not answer the close (code
    1006); its pending receive() then ends."""
    ws._set_code_close_transport(WSCloseCode.ABNORMAL_CLOSURE)


# -- hooks.py and aiohttp_signals.py -------------------------------------------------------------


def cleanup_context(callback: Any) -> web_app.CleanupContext | None:
    """The app's cleanup_ctx list when `callback` is how aiohttp runs it."""
    owner = getattr(callback, "__self__", None)
    return owner if isinstance(owner, web_app.CleanupContext) else None


def entered(contexts: web_app.CleanupContext) -> list[Any]:
    """The cleanup_ctx entries entered so far (aiohttp exits them last first)."""
    return contexts._exits
