"""A user's test that their app drains, with graceful's pytest plugin.

Installing graceful (with pytest) is enough: the `graceful_server` fixture comes from its
`pytest11` entry point. pytest-aiohttp (or pytest-asyncio) runs the async tests; this
project sets `asyncio_mode = "auto"`, elsewhere mark them `@pytest.mark.asyncio`.
The app is graceful's demo (graceful/demo.py); serve yours as "yourpackage.app:factory".

    pytest examples/test_demo_drains.py
"""

from __future__ import annotations

import pytest

APP = "graceful.demo:factory"


# --8<-- [start:sigterm]
async def test_requests_in_flight_at_sigterm_are_answered(graceful_server):
    """A SIGTERM while two slow requests run: both answered in full, with Connection: close;
    the stop's phases in order and within a second of the slowest request; exit 0."""
    server = graceful_server(APP, "--drain-timeout", "10")
    held = [await server.hold("/slow?s=0.5"), await server.hold("/slow?s=0.8")]
    server.stop()  # SIGTERM
    await server.assert_held_answered(status=200)
    server.assert_closes_after_stop()
    assert (await held[1].response()).body.startswith(b'{"slept_s": 0.8')
    assert await server.exited() == 0
    server.assert_timeline(budget_s=2)
# --8<-- [end:sigterm]


async def test_the_counter_survives_the_stop(graceful_server, tmp_path):
    """The demo counts requests in app[graceful.STATE]: the checkpoint holds the count."""
    path = tmp_path / "demo.ckpt"
    server = graceful_server(APP, "--checkpoint", str(path))
    for _ in range(3):
        assert (await server.get("/")).status == 200
    server.stop("SIGINT")
    server.assert_exit(0)
    server.assert_checkpoint("requests", 3)

    again = graceful_server(APP, "--checkpoint", str(path))
    assert (await again.get("/")).body == b'{"hello": "graceful", "requests": 4}'


async def test_a_request_past_the_deadline_is_cancelled_and_the_exit_says_so(graceful_server):
    """A request longer than --drain-timeout is cancelled at the deadline: exit 3, and the
    drain.deadline event names it."""
    server = graceful_server(APP, "--drain-timeout", "0.3", "--cancel-grace", "0.2")
    await server.hold("/slow?s=30")
    server.stop()
    server.assert_exit(3)
    cut = server.wait_for("drain.deadline")
    assert [r["path"] for r in cut["requests"]] == ["/slow"]
    with pytest.raises(AssertionError, match="not answered in full"):
        await server.assert_held_answered()


async def test_a_second_stop_cuts_the_drain_short(graceful_server):
    """The first SIGTERM drains; a second one cancels what still runs at once."""
    server = graceful_server(APP, "--drain-timeout", "30")
    await server.hold("/slow?s=30")
    server.stop()
    server.stop()  # spaced so that graceful counts it as a second stop
    assert server.wait_for("stop.requested", attempt=2)["mode"] == "force"
    server.assert_exit(3)
    server.assert_timeline(budget_s=5)


async def test_in_process_for_speed(graceful_server):
    """The same app on a thread of the test process: no signals, stop() goes through the
    API with the source named; the events are the same."""
    server = graceful_server(APP, in_process=True, drain_timeout=5)
    await server.hold("/slow?s=0.3")
    server.stop("SIGTERM")
    await server.assert_held_answered()
    server.assert_closes_after_stop()
    assert await server.exited() == 0
    assert server.wait_for("stop.requested")["source"] == "SIGTERM"
    server.assert_timeline(budget_s=2)
