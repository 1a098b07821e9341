"""The stop sequence, end to end: the real CLI, real signals, real sockets.

1. In-flight requests finish after SIGTERM or SIGINT; the exit code is 0.
2. New connections are refused once the listeners close.
3. Responses sent while draining say Connection: close.
4. Pipelined requests already received at the stop are all answered.
5. Uploads in progress at the stop complete.
6. The drain deadline cancels what still runs: exit 3, the requests logged.
7. A second signal cuts the drain short; a third exits at once; a repeat within
   REPEAT_IGNORED_S does not count.
8. During the pre-stop delay readiness is 503 and new connections are still served.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from graceful import checkpoint
from graceful.lifecycle.runtime import REPEAT_IGNORED_S
from tests.rawhttp import Connection, caught_up, get


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_in_flight_requests_complete(serve, signum, loop):
    """1, 3. Ten slow requests in flight at the signal all complete, with Connection: close."""
    server = serve("tests.apps:basic", "--loop", loop, "--drain-timeout", "10")
    held = await asyncio.gather(*(server.hold("/slow?s=0.8") for _ in range(10)))
    server.stop(signum)
    await server.assert_held_answered(status=200)
    server.assert_closes_after_stop()
    assert all([await h.conn.at_eof() for h in held])
    assert await server.exited() == 0
    server.assert_timeline(phases=("stop.requested", "listeners.closed", "drain.done",
                                   "hooks.done", "process.exit"))
    assert server.wait_for("stop.requested")["source"] == signal.Signals(signum).name


async def test_new_connections_refused_after_listeners_close(serve):
    """2. Once listeners.closed is logged, a new connection is refused."""
    server = serve("tests.apps:basic", "--drain-timeout", "10")
    busy = (await server.hold("/slow?s=1.5")).conn
    server.signal()
    await asyncio.to_thread(server.wait_for, "listeners.closed")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", server.port)
    assert (await busy.read_response()).status == 200
    assert await asyncio.to_thread(server.wait) == 0


async def test_pipelined_requests_at_stop_are_answered(serve):
    """4. Three requests pipelined behind a slow one: all four answered, the last closes."""
    server = serve("tests.apps:basic")
    conn = await Connection.open(server.port)
    conn.send("GET", "/traced?s=0.6")
    for _ in range(3):
        conn.send("GET", "/fast")
    await asyncio.to_thread(server.wait_for, "app.handler_started", n=1)
    server.signal()
    responses = [await conn.read_response() for _ in range(4)]
    assert [r.status for r in responses] == [200] * 4
    assert [r.body for r in responses[1:]] == [b"fast\n"] * 3
    assert responses[-1].closes and not responses[0].closes
    assert await conn.at_eof()
    assert await asyncio.to_thread(server.wait) == 0


async def test_uploads_in_progress_complete(serve):
    """5. Bodies still being uploaded when SIGTERM arrives are read whole and answered."""
    server = serve("tests.apps:basic", "--drain-timeout", "10")
    size, chunks = 200_000, 10
    conns = [(await server.hold("/upload", "POST", headers={"Content-Length": str(size)})).conn
             for _ in range(5)]
    for i in range(chunks):
        if i == chunks // 2:
            server.signal()
        for conn in conns:
            conn.writer.write(b"x" * (size // chunks))
            await conn.writer.drain()
        await asyncio.sleep(0.05)
    responses = await asyncio.gather(*(conn.read_response() for conn in conns))
    assert [(r.status, r.body) for r in responses] == [(200, b"200000\n")] * 5
    assert all(r.closes for r in responses)
    assert await asyncio.to_thread(server.wait) == 0


async def test_drain_deadline_cancels_and_exits_3(serve):
    """6. A request longer than the drain timeout is cancelled and logged; exit 3."""
    server = serve("tests.apps:basic", "--drain-timeout", "0.5", "--cancel-grace", "0.2")
    conn = (await server.hold("/slow?s=30")).conn
    server.signal()
    assert await conn.at_eof(10)
    assert await asyncio.to_thread(server.wait) == 3
    deadline = server.wait_for("drain.deadline")
    assert deadline["cancelled"] == 1
    assert deadline["requests"][0]["method"] == "GET"
    assert deadline["requests"][0]["path"] == "/slow"
    assert deadline["requests"][0]["age_s"] >= 0.5


async def test_handler_swallowing_cancellation_cannot_hold_the_process(serve):
    """6. A handler that ignores CancelledError: the process still ends after the grace."""
    server = serve("tests.apps:basic", "--drain-timeout", "0.3", "--cancel-grace", "0.2")
    _conn = (await server.hold("/stubborn")).conn  # held open to the end
    server.signal()
    assert await asyncio.to_thread(server.wait, 10) == 3
    assert server.wait_for("drain.deadline")["requests"][0]["unwound"] is False


async def test_second_signal_cuts_the_drain_short(serve, tmp_path):
    """7. SIGTERM, then SIGINT: the 30 s request is cancelled at once; hooks still run."""
    server = serve("tests.apps:basic", "--drain-timeout", "30",
                   "--checkpoint", str(tmp_path / "state.json"))
    _conn = (await server.hold("/slow?s=30")).conn  # held open to the end
    server.signal()
    await asyncio.to_thread(server.wait_for, "listeners.closed")
    await asyncio.sleep(REPEAT_IGNORED_S)  # a repeat sooner than this is ignored
    server.signal(signal.SIGINT)
    assert await asyncio.to_thread(server.wait, 10) == 3
    assert server.wait_for("drain.deadline")["forced"] is True
    assert "hooks.done" in server.names() and "checkpoint.flushed" in server.names()


async def test_third_signal_exits_at_once(serve, tmp_path):
    """7. Three signals: the process exits without waiting for hooks, state still flushed."""
    path = tmp_path / "state.json"
    server = serve("tests.apps:with_hooks", "--drain-timeout", "30", "--hook-timeout", "30",
                   "--checkpoint", str(path), env={"TRACE_FILE": str(tmp_path / "trace")})
    _conn = (await server.hold("/stubborn")).conn  # held open to the end
    for _ in range(3):
        server.signal()
        await asyncio.sleep(REPEAT_IGNORED_S + 0.05)
    assert await asyncio.to_thread(server.wait, 10) == 3
    assert server.wait_for("checkpoint.flushed")["abandoned"] is True
    assert path.exists()


async def test_pre_stop_delay_keeps_serving_while_not_ready(serve):
    """8. During the pre-stop delay: /readyz 503, new connections served with close."""
    server = serve("tests.apps:basic", "--pre-stop-delay", "1.0")
    assert (await get(server.port, "/readyz")).status == 200
    server.signal()
    await asyncio.to_thread(server.wait_for, "stop.requested")
    ready = await get(server.port, "/readyz")
    assert ready.status == 503 and ready.body == b"draining\n"
    fresh = await get(server.port, "/fast")
    assert fresh.status == 200 and fresh.closes
    assert "listeners.closed" not in server.names()
    assert await asyncio.to_thread(server.wait) == 0



async def test_handler_outliving_its_client_is_waited_for(serve, tmp_path):
    """9. The client hangs up mid-request; the handler's state change reaches the checkpoint."""
    path = tmp_path / "state.json"
    server = serve("tests.apps:basic", "--drain-timeout", "10", "--checkpoint", str(path))
    conn = (await server.hold("/slow?s=1")).conn
    conn.writer.close()
    await conn.writer.wait_closed()
    await caught_up(server.port)  # the server has seen the hang-up
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    assert server.wait_for("drain.done")["took_s"] >= 0.5
    snapshot, _ = checkpoint.load(path)
    assert snapshot is not None and snapshot.state["served"] == 1


async def test_response_prepared_with_a_cloned_request_says_close(serve):
    """10."""
    server = serve("tests.apps:with_forwarded", "--drain-timeout", "10")
    conn = (await server.hold("/late-stream?s=0.6")).conn
    server.signal()
    response = await conn.read_response()
    assert response.status == 200 and response.closes
    assert await asyncio.to_thread(server.wait) == 0


async def test_handler_returning_on_cancel_is_unwound_without_waiting_the_grace(serve):
    """11. Its response was prepared before the stop (keep-alive): once it returns, the
    connection must not go back to waiting for another request."""
    server = serve("tests.apps:with_polite_stream", "--drain-timeout", "0.3",
                   "--cancel-grace", "5")
    conn = (await server.hold("/polite-stream")).conn
    server.signal()
    assert (await conn.read_response()).status == 200
    assert await asyncio.to_thread(server.wait, 4) == 3
    deadline = server.wait_for("drain.deadline")
    assert [r["unwound"] for r in deadline["requests"]] == [True]
