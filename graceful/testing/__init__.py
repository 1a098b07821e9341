"""Testing helpers for applications served by graceful; the pytest plugin
(graceful/pytest_plugin.py) hands them out as the `graceful_server` fixture.

    http.py     a raw HTTP/1.1 client: exact headers, cut bodies, closes
    events.py   the served process's JSON events, waited for by name
    marks.py    the middleware that says a held request reached its handler
    child.py    the command line with that middleware, for the subprocess
    server.py   the server object: hold, stop, exit, events, checkpoint, assertions
    process.py  served in a subprocess (real signals) or in-process (fast)
"""

from __future__ import annotations

from graceful.testing.http import HOLD_HEADER, Connection, Held, IncompleteResponse, Response
from graceful.testing.process import InProcessServer, SubprocessServer
from graceful.testing.server import TIMELINE, GracefulServer

__all__ = [
    "HOLD_HEADER",
    "TIMELINE",
    "Connection",
    "GracefulServer",
    "Held",
    "InProcessServer",
    "IncompleteResponse",
    "Response",
    "SubprocessServer",
]
