"""aiohttp's internals are fenced in one adapter (graceful/http/aiohttp_internals.py).

1. No private aiohttp name from REQUIREMENTS appears in graceful's sources outside the
   adapter (and the canary's probes, which exercise them).
2. Requests are made of the tracked class from the start: a subclass of the app's own
   request class (isinstance holds), and nothing in graceful switches a live request's class.
3. They are made by aiohttp's own factory function, bound to the app, with the tracked class
   for its default: no keyword dict built per request (a functools.partial did), and
   aiohttp's own default untouched.
4. Outside a stop, a request costs aiohttp's own path: each connection's factory is that
   function itself (no wrapper), the tracked class has no hook of its own, and the health
   probes are routes of the app (nothing in front of its handler). A stopping tracker puts
   the hook on the class for the requests already made, the end of a pause takes it off.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path

from aiohttp import web

import graceful
from graceful.http.aiohttp_internals import REQUIREMENTS, factory_making
from graceful.http.drain import ConnectionTracker
from graceful.http.health import Health
from graceful.http.protocol import DrainingRequestHandler, handler_options, tracked_class

PACKAGE = Path(graceful.__file__).parent
FENCE = {PACKAGE / "http" / "aiohttp_internals.py", PACKAGE / "http" / "aiohttp_probes.py"}


def private_names() -> set[str]:
    names = {req.name for req in REQUIREMENTS if req.kind != "behaviour"}
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_private_names_only_in_the_adapter() -> None:
    """1."""
    names = private_names()
    assert {"_waiter", "_messages", "_prepare_hook", "_kwargs", "_exits"} <= names
    alternatives = "|".join(sorted(names))
    pattern = re.compile(r"""[.'"]""" + f"({alternatives})" + r"\b")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in FENCE:
            continue
        text = path.read_text()
        # a name a module gives its own objects (`self._waiting = ...`) is its own there
        own = set(re.findall(r"self\.(_\w+)(?:: [^=]+)? = ", text))
        for number, line in enumerate(text.splitlines(), 1):
            if ((match := pattern.search(line)) and match[1] not in own
                    and not line.lstrip().startswith("#")):
                found.append(f"{path.relative_to(PACKAGE)}:{number}: {match[1]}")
    assert found == []


def test_requests_are_tracked_from_the_start() -> None:
    """2."""
    class AppRequest(web.Request):
        pass

    assert issubclass(tracked_class(web.Request), web.Request)
    assert issubclass(tracked_class(AppRequest), AppRequest)
    assert tracked_class(tracked_class(AppRequest)) is tracked_class(AppRequest)
    assert "__slots__" not in vars(tracked_class(AppRequest))  # same layout
    switching = [p.name for p in PACKAGE.rglob("*.py")
                 if p not in FENCE and "__class__" in p.read_text()]
    assert switching == []


async def test_tracked_requests_cost_aiohttp_own_call() -> None:
    """3."""
    app = web.Application()
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        assert runner.server is not None
        factory = runner.server.request_factory
        made = factory_making(factory, tracked_class(web.Request))
        assert getattr(made, "__self__", None) is app
        assert made.__func__.__code__ is web.Application._make_request.__code__
        default = inspect.signature(made.__func__).parameters["_cls"].default
        assert default is tracked_class(web.Request)
        untouched = inspect.signature(web.Application._make_request).parameters["_cls"].default
        assert untouched is web.Request
    finally:
        await runner.cleanup()


async def test_no_hook_on_the_request_path_outside_a_stop() -> None:
    """4."""
    app = web.Application()
    Health("/livez", "/readyz", is_ready=lambda: True, phase=lambda: "ready").install(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    loop = asyncio.get_running_loop()
    try:
        server = runner.server
        assert server is not None
        tracker = ConnectionTracker(loop)
        protocol = DrainingRequestHandler(server, tracker=tracker, loop=loop,
                                          **handler_options(server))
        factory = protocol._request_factory
        assert getattr(factory, "__func__", None) is not None
        assert factory.__func__.__code__ is web.Application._make_request.__code__
        assert protocol._request_handler is server.request_handler  # aiohttp's own
        cls = tracked_class(web.Request)
        assert "_prepare_hook" not in vars(cls)
        tracker.begin_stopping()
        assert "_prepare_hook" in vars(cls)
        tracker.end_stopping()
        assert "_prepare_hook" not in vars(cls)
    finally:
        await runner.cleanup()
