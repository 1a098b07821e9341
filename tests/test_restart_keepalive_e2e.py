"""A restart keeps idle keep-alive connections: the new workers serve them (POSIX).

1. `--workers 1` and `--workers 2`: keep-alive connections idle at SIGHUP are answered,
   on the same connection, by a new worker (the app answers its pid); none is closed, and
   the old worker logs them as handed.
2. Clients that send request after request through the restart: none is cut or told to
   close; requests written while their connection's descriptor moved waited in the kernel
   and were answered by the new worker (`waiting` in restart.connections_taken).
3. A connection with a request in its handler at the restart is answered by the old
   worker, kept alive, then moves: its next request is answered by a new worker.
4. Bytes in flight are never handed: a connection whose next request has begun to arrive
   (read by the old worker) is answered by the old worker with `Connection: close`, then
   closed.
5. A TLS listener's connections are not handed: answered by the old worker, then closed.
6. With `--checkpoint` (the new worker accepts once the old one's final flush is done) the
   idle connections are handed too, and served once the new worker accepts.
7. A connection whose last request had a body (a JSON POST, a body sent after its headers,
   an Expect: 100-continue upload) moves like any other: its next request is answered by a
   new worker on the same connection.
8. So does http.client's (which never retries): POST, restart, GET on the same connection.
9. A POST whose body has all arrived, in its handler at the restart, is answered keep-alive
   by the old worker, then its connection moves.
10. A pipelining client whose POST body came with the start of its next request (in one
   send, or the body's end and that start in a later one) is never handed: a connection idle
   with that start read is closed; one in its handler is answered with Connection: close,
   and the next request, completed meanwhile, is answered before the close.
"""

from __future__ import annotations

import asyncio
import http.client
import signal
import sys
import time

import pytest

from graceful.testing.http import Connection
from tests.test_tls_e2e import TlsClient, _client_context
from tests.test_tls_e2e import pki as pki  # a fixture

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX only")

APP = "tests.apps:answers_pid"


async def _open(port: int, count: int) -> tuple[list[Connection], set[int]]:
    """`count` keep-alive connections, each with one request answered: idle now."""
    conns = [await Connection.open(port) for _ in range(count)]
    pids = set()
    for conn in conns:
        response = await conn.request("GET", "/pid")
        assert response.status == 200 and not response.closes
        pids.add(int(response.text()))
    return conns, pids


def _summed(server, name: str, count: int, keys: tuple[str, ...]) -> dict[str, int]:
    """`keys` of the first `count` `name` events (one per worker), added up."""
    deadline = time.monotonic() + 30
    while True:
        found = [event for event in list(server.events) if event.get("event") == name]
        if len(found) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(found) == count, [e for e in server.events if e.get("level") != "debug"]
    return {key: sum(event[key] for event in found) for key in keys}


async def _restart(server) -> dict:
    server.signal(signal.SIGHUP)
    return await asyncio.to_thread(server.wait_for, "restart.done", 60)


@pytest.mark.parametrize("workers", [1, 2])
async def test_idle_keepalive_connections_are_served_on_by_the_new_workers(serve, workers):
    """1."""
    server = serve(APP, "--workers", str(workers))
    server.wait_for("supervisor.ready")
    conns, old_pids = await _open(server.port, 20)
    done = await _restart(server)
    assert set(done["replaced"]) == old_pids or len(old_pids) <= workers
    new_pids = set(done["workers"])
    answered = set()
    for conn in conns:
        response = await conn.request("GET", "/pid")  # the same connection
        assert response.status == 200
        answered.add(int(response.text()))
    assert answered <= new_pids and not answered & old_pids
    kept = await asyncio.to_thread(_summed, server, "restart.connections_kept",
                                   len(done["replaced"]), ("handed", "closed", "kept"))
    assert kept == {"handed": len(conns), "closed": 0, "kept": 0}
    for conn in conns:
        conn.close()
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0


async def _keep_asking(conn: Connection, until: asyncio.Event,
                       answers: list[tuple[int, bool]]) -> list[tuple[int, bool]]:
    """Request after request on `conn`, each sent as soon as the one before is answered,
    until `until` is set or the server closes: (pid, Connection: close) of each, appended
    to `answers` as they come."""
    while not until.is_set():
        response = await asyncio.wait_for(conn.request("GET", "/pid"), 30)
        assert response.status == 200
        answers.append((int(response.text()), response.closes))
        if response.closes:
            break
    return answers


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_clients_asking_through_the_restart_are_never_told_to_reconnect(serve, loop):
    """2."""
    server = serve(APP, "--workers", "1", "--loop", loop)
    server.wait_for("supervisor.ready")
    conns, old_pids = await _open(server.port, 50)
    stop = asyncio.Event()
    seen: list[list[tuple[int, bool]]] = [[] for _ in conns]
    clients = [asyncio.ensure_future(_keep_asking(conn, stop, answers))
               for conn, answers in zip(conns, seen, strict=True)]
    done = await _restart(server)
    taken = await asyncio.to_thread(_summed, server, "restart.connections_taken", 1,
                                    ("connections", "waiting"))
    # each client's next answer after its move (a client starved on a loaded machine may
    # not have asked yet when the new worker logs what it took)
    deadline = time.monotonic() + 15
    while (any(not answers or answers[-1][0] not in done["workers"] for answers in seen)
           and time.monotonic() < deadline and not any(c.done() for c in clients)):
        await asyncio.sleep(0.02)
    stop.set()
    answers = await asyncio.gather(*clients)  # none cut: every request answered
    assert taken["waiting"] > 0, ("no request was written while its connection moved", taken)
    new_pids = set(done["workers"])
    for conn_answers in answers:  # the old worker's answers, then the new one's; no close
        pids = [pid for pid, _ in conn_answers]
        assert not any(closes for _, closes in conn_answers)
        assert pids[0] in old_pids and pids[-1] in new_pids
        moved = pids.index(pids[-1])
        assert set(pids[:moved]) <= old_pids and set(pids[moved:]) == {pids[-1]}
    kept = await asyncio.to_thread(_summed, server, "restart.connections_kept", 1,
                                   ("handed", "closed", "kept"))
    assert kept == {"handed": len(conns), "closed": 0, "kept": 0}
    assert taken["connections"] == len(conns)
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0


async def test_a_connection_mid_request_is_answered_then_moves(serve):
    """3."""
    server = serve(APP, "--workers", "1")
    server.wait_for("supervisor.ready")
    (busy,), old_pids = await _open(server.port, 1)
    busy.send("GET", "/pid?s=1.5")  # in its handler when the restart comes
    await asyncio.sleep(0.3)
    server.signal(signal.SIGHUP)
    response = await asyncio.wait_for(busy.read_response(), 30)
    assert int(response.text()) in old_pids and not response.closes
    done = await asyncio.to_thread(server.wait_for, "restart.done", 60)
    response = await busy.request("GET", "/pid")
    assert int(response.text()) in done["workers"] and not response.closes
    kept = await asyncio.to_thread(_summed, server, "restart.connections_kept", 1,
                                   ("handed", "closed", "kept"))
    assert kept == {"handed": 1, "closed": 0, "kept": 0}
    busy.close()
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0


async def test_bytes_in_flight_keep_a_connection_on_the_old_worker_which_closes_it(serve):
    """4."""
    server = serve(APP, "--workers", "1")
    server.wait_for("supervisor.ready")
    (conn,), old_pids = await _open(server.port, 1)
    # a slow request, and the start of the next one behind it (a pipelining client): that
    # start is in the old worker's parser, and cannot move
    conn.writer.write(b"GET /pid?s=1.5 HTTP/1.1\r\nHost: test\r\n\r\nGET /pid HTTP/1.1\r\nHo")
    await asyncio.sleep(0.3)
    server.signal(signal.SIGHUP)
    response = await asyncio.wait_for(conn.read_response(), 30)
    assert int(response.text()) in old_pids and response.closes
    assert await conn.at_eof()
    kept = await asyncio.to_thread(_summed, server, "restart.connections_kept", 1,
                                   ("handed", "closed", "kept"))
    assert kept == {"handed": 0, "closed": 1, "kept": 0}
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0


def test_a_tls_connection_is_not_handed(serve, pki):
    """5."""
    server = serve(APP, "--workers", "1", "--ssl-certfile", pki["cert"],
                   "--ssl-keyfile", pki["key"])
    server.wait_for("supervisor.ready")
    client = TlsClient(server.port, _client_context(pki))
    client.send("/pid")
    status, _, body = client.response()
    assert status == 200
    old_pid = int(body)
    server.signal(signal.SIGHUP)
    server.wait_for("restart.connections_kept")
    assert client.closed_with_close_notify()  # idle: closed as at any stop
    done = server.wait_for("restart.done", 60)
    assert done["replaced"] == [old_pid]
    kept = _summed(server, "restart.connections_kept", 1, ("handed", "closed", "kept"))
    assert kept["handed"] == 0
    client.close()
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


async def test_with_a_checkpoint_the_handed_connections_wait_for_the_new_worker(serve,
                                                                                tmp_path):
    """6."""
    server = serve(APP, "--workers", "1", "--checkpoint", str(tmp_path / "state.json"))
    server.wait_for("supervisor.ready")
    conns, _ = await _open(server.port, 20)
    server.signal(signal.SIGHUP)
    # handed: the old worker flushes and exits, the new one takes the state over, then serves
    await asyncio.to_thread(server.wait_for, "restart.connections_kept", 60)
    for conn in conns:
        conn.send("GET", "/pid")
    answers = [await asyncio.wait_for(conn.read_response(), 30) for conn in conns]
    done = await asyncio.to_thread(server.wait_for, "restart.done", 60)
    assert {int(response.text()) for response in answers} == set(done["workers"])
    assert not any(response.closes for response in answers)
    for conn in conns:
        conn.close()
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0


async def _restarted_then_asked(server, conns: list[Connection], old_pids: set[int]) -> None:
    """SIGHUP; then each of `conns` (idle) is answered by a new worker on the same
    connection, and the old worker handed them all."""
    done = await _restart(server)
    for conn in conns:
        response = await conn.request("GET", "/pid")
        assert response.status == 200 and not response.closes
        assert int(response.text()) in done["workers"] and int(response.text()) not in old_pids
    kept = await asyncio.to_thread(_summed, server, "restart.connections_kept", 1,
                                   ("handed", "closed", "kept"))
    assert kept == {"handed": len(conns), "closed": 0, "kept": 0}


async def _posted(conn: Connection, how: str) -> int:
    """A POST with a 5-byte body on `conn`, sent `how`; the pid that answered."""
    head = b"POST /pid HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
    if how == "in one send":
        conn.writer.write(head + b"\r\nhello")
    elif how == "body ending in a blank line":  # read like a header block's end
        conn.writer.write(head + b"\r\nh\r\n\r\n")
    elif how == "body sent later":
        conn.writer.write(head + b"\r\n")
        await conn.writer.drain()
        await asyncio.sleep(0.05)
        conn.writer.write(b"hello")
    else:  # Expect: 100-continue: the body only once the server asked for it
        conn.writer.write(head + b"Expect: 100-continue\r\n\r\n")
        assert (await conn.reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
        conn.writer.write(b"hello")
    response = await conn.read_response()
    assert response.status == 200 and response.headers["x-body-length"] == "5"
    return int(response.text())


@pytest.mark.parametrize("how", ["in one send", "body sent later", "expect 100-continue",
                                 "body ending in a blank line"])
async def test_a_connection_whose_last_request_had_a_body_moves(serve, how):
    """7."""
    server = serve(APP, "--workers", "1")
    server.wait_for("supervisor.ready")
    conns = [await Connection.open(server.port) for _ in range(10)]
    old_pids = {await _posted(conn, how) for conn in conns}
    await _restarted_then_asked(server, conns, old_pids)
    for conn in conns:
        conn.close()
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0


def _post_restart_get(server) -> tuple[int, int, str | None]:
    """http.client: POST, a restart, GET on the same HTTPConnection: the pids that
    answered and the GET's Connection header."""
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        client.request("POST", "/pid", body=b'{"a": 1}',
                       headers={"Content-Type": "application/json"})
        first = int(client.getresponse().read())
        server.signal(signal.SIGHUP)
        server.wait_for("restart.done", 60)
        client.request("GET", "/pid")  # no retry: a closed connection fails here
        response = client.getresponse()
        return first, int(response.read()), response.getheader("Connection")
    finally:
        client.close()


def test_http_client_posts_then_gets_on_the_same_connection_through_a_restart(serve):
    """8."""
    server = serve(APP, "--workers", "1")
    server.wait_for("supervisor.ready")
    first, second, connection = _post_restart_get(server)
    assert second != first and connection != "close"
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


async def test_a_post_in_its_handler_is_answered_keep_alive_then_moves(serve):
    """9."""
    server = serve(APP, "--workers", "1")
    server.wait_for("supervisor.ready")
    (busy,), old_pids = await _open(server.port, 1)
    busy.send("POST", "/pid?s=1.5", b"hello")  # its body all sent; in its handler
    await asyncio.sleep(0.3)
    server.signal(signal.SIGHUP)
    response = await asyncio.wait_for(busy.read_response(), 30)
    assert int(response.text()) in old_pids and not response.closes
    assert response.headers["x-body-length"] == "5"
    await _restarted_then_asked(server, [busy], old_pids)
    busy.close()
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0


POST_THEN_NEXT = (b"POST /pid%s HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello"
                  b"GET /pid HTTP/1.1\r\nHo")
NEXT_REST = b"st: test\r\n\r\n"


async def _send_split(conn: Connection, data: bytes, split: str) -> None:
    """`data` in one send, or in two: its end (the body's last bytes and the next request's
    start) a moment later."""
    if split == "one send":
        conn.writer.write(data)
        return
    at = data.index(b"llo")
    conn.writer.write(data[:at])
    await conn.writer.drain()
    await asyncio.sleep(0.1)
    conn.writer.write(data[at:])


@pytest.mark.parametrize("split", ["one send", "body end with it"])
async def test_an_idle_connection_with_a_next_request_begun_after_a_post_is_closed(serve,
                                                                                   split):
    """10. Idle: its POST answered, the start of its next request in the old worker."""
    server = serve(APP, "--workers", "1")
    server.wait_for("supervisor.ready")
    (conn,), old_pids = await _open(server.port, 1)
    await _send_split(conn, POST_THEN_NEXT % b"", split)
    response = await asyncio.wait_for(conn.read_response(), 30)
    assert int(response.text()) in old_pids and not response.closes
    await asyncio.sleep(0.2)  # the POST's response logged: the connection is quiet
    await _restart(server)
    kept = await asyncio.to_thread(_summed, server, "restart.connections_kept", 1,
                                   ("handed", "closed", "kept"))
    assert kept == {"handed": 0, "closed": 1, "kept": 0}
    assert await conn.at_eof()  # closed, not handed: a new worker would see "st: test"
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0


@pytest.mark.parametrize("completed", [True, False])
@pytest.mark.parametrize("split", ["one send", "body end with it"])
async def test_a_post_in_its_handler_with_the_next_request_behind_it_is_told_to_close(
        serve, split, completed):
    """10. In its handler at the restart, the start of the next request read: left
    incomplete, the POST's response says close. Completed while the handler runs, that
    request is answered by the old worker too (nothing is read ahead after it: the
    connection then moves)."""
    server = serve(APP, "--workers", "1")
    server.wait_for("supervisor.ready")
    (conn,), old_pids = await _open(server.port, 1)
    await _send_split(conn, POST_THEN_NEXT % b"?s=1.5", split)
    await asyncio.sleep(0.3)
    server.signal(signal.SIGHUP)
    if completed:
        await asyncio.sleep(0.2)  # the handler still sleeps
        conn.writer.write(NEXT_REST)
    first = await asyncio.wait_for(conn.read_response(), 30)
    assert first.headers["x-body-length"] == "5" and int(first.text()) in old_pids
    if completed:
        second = await asyncio.wait_for(conn.read_response(), 30)
        assert int(second.text()) in old_pids and not second.closes
        done = await asyncio.to_thread(server.wait_for, "restart.done", 60)
        third = await conn.request("GET", "/pid")
        assert int(third.text()) in done["workers"] and not third.closes
        conn.close()
    else:
        assert first.closes
        assert await conn.at_eof()
    kept = await asyncio.to_thread(_summed, server, "restart.connections_kept", 1,
                                   ("handed", "closed", "kept"))
    assert kept["handed"] == int(completed)
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait) == 0
