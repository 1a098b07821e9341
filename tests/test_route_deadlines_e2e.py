"""Per-route drain deadlines: streams cut at their route's deadline, the rest keep the budget.

1. Streams on routes marked 0.5 s (add_get's route, a route table above and below, a sub-app)
   and a class-based view's request are cut 0.5 s into the drain; one drain.deadline names
   the route's deadline and counts 4 streams apart from 1 request; a slow request on an
   unmarked route completes; exit 3.
2. At the drain's own deadline, a stream and a request still running are counted apart.
3. graceful.drain_deadline refuses a value that is not a number of seconds.
"""

from __future__ import annotations

import asyncio
import datetime

import pytest

import graceful
from graceful.errors import ConfigError
from tests.test_stopping_e2e import open_stream, read_chunked


def _at(event: dict) -> float:
    return datetime.datetime.fromisoformat(event["timestamp"]).timestamp()


STREAMS = ["/events", "/table-events", "/table-events-below", "/sub/events"]


async def test_streams_are_cut_at_their_routes_deadline(serve):
    """1."""
    server = serve("tests.apps:with_route_deadlines", "--drain-timeout", "10")
    marked = server.wait_for("drain.route_deadlines")["routes"]
    assert marked == {path: 0.5 for path in [*STREAMS, "/report"]}
    streams = [(await open_stream(server.port, path))[0] for path in STREAMS]
    report = (await server.hold("/report")).conn
    slow = (await server.hold("/slow?s=2")).conn
    server.signal()
    for conn in streams:
        body, whole = await read_chunked(conn)
        assert not whole and body.startswith(b"data: 0\n\n")  # cut, and said so in the log
    assert await report.at_eof(5)
    response = await asyncio.wait_for(slow.read_response(), 10)
    assert response.status == 200 and response.closes
    assert await asyncio.to_thread(server.wait) == 3
    cut = server.wait_for("drain.deadline")
    assert cut["route_deadline_s"] == 0.5 and cut["forced"] is False
    assert (cut["cancelled"], cut["cancelled_streams"], cut["cancelled_requests"]) == (5, 4, 1)
    assert {r["path"]: r["stream"] for r in cut["requests"]} == {
        **{path: True for path in STREAMS}, "/report": False}
    assert all(r["unwound"] for r in cut["requests"])
    closed = server.wait_for("listeners.closed")
    assert 0.45 <= _at(cut) - _at(closed) < 0.8
    assert server.names().count("drain.deadline") == 1  # the slow request was not cut
    server.wait_for("drain.done")


async def test_the_drain_deadline_counts_streams_apart(serve):
    """2."""
    server = serve("tests.apps:with_route_deadlines", "--drain-timeout", "1")
    stream, _ = await open_stream(server.port, "/endless")
    await server.hold("/slow?s=30")  # kept to the drain deadline
    server.signal()
    assert not (await read_chunked(stream))[1]
    assert await asyncio.to_thread(server.wait) == 3
    cut = server.wait_for("drain.deadline")
    assert "route_deadline_s" not in cut
    assert (cut["cancelled"], cut["cancelled_streams"], cut["cancelled_requests"]) == (2, 1, 1)
    assert {r["path"]: r["stream"] for r in cut["requests"]} == {"/endless": True,
                                                                 "/slow": False}


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "2", True])
def test_drain_deadline_refuses_what_is_not_seconds(bad):
    """3."""
    with pytest.raises(ConfigError):
        graceful.drain_deadline(bad)
