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
"""

from __future__ import annotations

import asyncio
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


async def _keep_asking(conn: Connection, until: asyncio.Event) -> list[tuple[int, bool]]:
    """Request after request on `conn`, each sent as soon as the one before is answered,
    until `until` is set or the server closes: (pid, Connection: close) of each."""
    answers = []
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
    clients = [asyncio.ensure_future(_keep_asking(conn, stop)) for conn in conns]
    done = await _restart(server)
    taken = await asyncio.to_thread(_summed, server, "restart.connections_taken", 1,
                                    ("connections", "waiting"))
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
