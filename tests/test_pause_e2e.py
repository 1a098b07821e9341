"""Pause and continue (SIGUSR1 / SIGUSR2, runtime.pause() / resume()).

1. A pause stops accepting and drains like a stop: the request in flight completes, a
   request pipelined behind it sees readiness 503 "pausing"; a connection made while
   paused waits in the accept queue, unanswered; nothing of the stop runs (no on_shutdown,
   no hook). Continue serves the waiting connection first, with the state kept.
2. A stop while paused is a normal stop: the connection waiting in the queue is served,
   on_shutdown and the hooks run, the checkpoint is written; exit 0.
3. The library: runtime.pause() and resume() from another thread; observers are told.
4. Over TLS, on a Unix socket and TCP at once (--bind): a client that connects
   while paused gets its TLS handshake and its answer after continue, on both; at the stop
   the socket file is removed as without a pause.
5. A stream that watches graceful.stopping ends at a pause with its last event, told
   kind "pause", and the pause is done at once (nothing cancelled); after continue a new
   stream is not told to stop, and the stop then ends it, told kind "stop".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import socket
import ssl
import threading

import aiohttp
from aiohttp import web

import graceful
from graceful import checkpoint as ckpt
from tests.rawhttp import Connection, caught_up, get
from tests.test_stopping_e2e import first_event, open_stream, read_chunked

UNANSWERED_S = 0.5


async def _unanswered(conn: Connection) -> bool:
    try:
        await asyncio.wait_for(conn.reader.read(1), UNANSWERED_S)
    except TimeoutError:
        return True
    return False


async def test_pause_drains_and_continue_serves_the_queue(serve, tmp_path):
    """1."""
    trace, state = tmp_path / "trace", tmp_path / "state.json"
    server = serve("tests.apps:with_traced_hooks", "--checkpoint", str(state),
                   env={"TRACE_FILE": str(trace)})
    assert (await get(server.port, "/count")).body == b"1\n"
    # Well under the 1 s after which the pause would log pause.progress (not expected below).
    busy = (await server.hold("/slow?s=0.5")).conn
    busy.send("GET", "/readyz")  # pipelined: answered once the slow one is
    await busy.writer.drain()
    await caught_up(server.port)
    server.signal(signal.SIGUSR1)
    await asyncio.to_thread(server.wait_for, "listeners.paused")
    waiting = await Connection.open(server.port)  # the kernel completes the handshake
    waiting.send("GET", "/count")
    slow = await busy.read_response()
    ready = await busy.read_response()
    assert slow.status == 200
    assert (ready.status, ready.body, ready.closes) == (503, b"pausing\n", True)
    assert await busy.at_eof()
    done = await asyncio.to_thread(server.wait_for, "pause.done")
    assert done["cancelled"] == 0
    assert await _unanswered(waiting)
    assert not trace.exists()  # neither on_shutdown nor the hook ran
    server.signal(signal.SIGUSR2)
    answer = await waiting.read_response()
    assert (answer.status, answer.body) == (200, b"2\n")  # the state was kept
    waiting.close()
    assert server.wait_for("resume.done")
    assert (await get(server.port, "/readyz")).body == b"ready\n"
    assert (await get(server.port, "/count")).body == b"3\n"
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    assert trace.read_text().split() == ["on_shutdown", "hook"]
    assert ckpt.read(state).state["count"] == 3
    assert [n for n in server.names() if n.startswith(("pause.", "resume."))] == [
        "pause.requested", "pause.done", "resume.requested", "resume.done"]


async def test_stop_while_paused_is_a_normal_stop(serve, tmp_path):
    """2."""
    trace, state = tmp_path / "trace", tmp_path / "state.json"
    server = serve("tests.apps:with_traced_hooks", "--checkpoint", str(state),
                   env={"TRACE_FILE": str(trace)})
    busy = (await server.hold("/slow?s=0.5")).conn
    server.signal(signal.SIGUSR1)
    await asyncio.to_thread(server.wait_for, "pause.done")
    assert (await busy.read_response()).status == 200
    waiting = await Connection.open(server.port)
    waiting.send("GET", "/count")
    assert await _unanswered(waiting)
    server.signal()
    answer = await waiting.read_response()
    assert (answer.status, answer.body, answer.closes) == (200, b"1\n", True)
    assert await asyncio.to_thread(server.wait) == 0
    assert server.wait_for("listeners.closed")["queued_connections"] == 1
    assert trace.read_text().split() == ["on_shutdown", "hook"]
    assert ckpt.read(state).state["count"] == 1


async def test_pause_and_resume_from_the_library():
    """3."""
    told: list[str] = []

    class Watcher(graceful.StopObserver):
        def paused(self) -> None:
            told.append("paused")

        def resumed(self) -> None:
            told.append("resumed")

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    async with graceful.Runtime(app, graceful.Config(port=0), observers=[Watcher()]) as runtime:
        threading.Thread(target=runtime.pause).start()
        while runtime.phase is not graceful.Phase.PAUSED:
            await asyncio.sleep(0.01)
        runtime.resume()
        while runtime.phase is not graceful.Phase.READY:
            await asyncio.sleep(0.01)
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{runtime.port}/") as response:
            assert await response.text() == "hello"
    assert told == ["paused", "resumed"]
    assert runtime.phase is graceful.Phase.STOPPED


def test_pause_and_continue_over_tls_on_a_unix_socket_and_tcp(tmp_path):
    """4."""
    import trustme

    from tests.test_bind_e2e import start

    authority = trustme.CA()
    cert, key, path = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "app.sock"
    issued = authority.issue_cert("127.0.0.1")
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    client_tls = ssl.create_default_context()
    authority.configure_trust(client_tls)
    server = start("tests.apps:basic", "--bind", f"unix:{path}", "--bind", "127.0.0.1:0",
                   "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    try:
        tcp = server.wait_for("server.started")["addresses"][1]
        port = int(tcp.rpartition(":")[2])

        def ask(family: int, address: object) -> bytes:
            raw = socket.socket(family, socket.SOCK_STREAM)
            raw.settimeout(10)
            raw.connect(address)  # the kernel completes it, paused or not
            with client_tls.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
                conn.sendall(b"GET /fast HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
            return data

        assert ask(socket.AF_INET, ("127.0.0.1", port)).startswith(b"HTTP/1.1 200")
        server.signal(signal.SIGUSR1)
        server.wait_for("pause.done")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            waiting = [pool.submit(ask, socket.AF_INET, ("127.0.0.1", port)),
                       pool.submit(ask, socket.AF_UNIX, str(path))]
            done, _ = concurrent.futures.wait(waiting, timeout=UNANSWERED_S)
            assert not done  # no handshake while paused
            server.signal(signal.SIGUSR2)
            answers = [future.result(timeout=10) for future in waiting]
        assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers), answers
        server.wait_for("resume.done")
        server.signal()
        assert server.wait() == 0
        assert not path.exists()
    finally:
        server.kill()


async def test_pause_ends_streams_as_a_stop_does(serve):
    """5."""
    server = serve("tests.apps:with_telling_stream", "--drain-timeout", "10")
    conn, _ = await open_stream(server.port)
    await first_event(conn)
    server.signal(signal.SIGUSR1)
    body, whole = await read_chunked(conn, timeout=5)
    assert whole, body
    assert body.endswith(b"event: bye\ndata: pause\n\n")
    assert await conn.at_eof(5)
    done = await asyncio.to_thread(server.wait_for, "pause.done")
    assert done["cancelled"] == 0 and done["took_s"] < 1, done
    server.signal(signal.SIGUSR2)
    await asyncio.to_thread(server.wait_for, "resume.done")
    conn, _ = await open_stream(server.port)
    for _ in range(3):  # ticks go on: the pause is over for the handlers too
        assert (await first_event(conn)).startswith(b"data: tick")
    server.signal()
    body, whole = await read_chunked(conn, timeout=5)
    assert whole and body.endswith(b"event: bye\ndata: stop\n\n"), body
    assert await asyncio.to_thread(server.wait) == 0
    assert "drain.deadline" not in server.names()
