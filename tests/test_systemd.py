"""systemd: READY=1 once serving, then STOPPING=1 with EXTEND_TIMEOUT_USEC from the budget."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, ServerProcess
from tests.rawhttp import Connection


async def test_notify_ready_then_stopping_with_extension(serve, tmp_path):
    address = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(10)
    try:
        server = serve("tests.apps:basic", "--drain-timeout", "20",
                       env={"NOTIFY_SOCKET": address})
        assert listener.recv(4096).decode().split("\n")[0] == "READY=1"
        conn = (await server.hold("/slow?s=1.3")).conn
        server.signal()
        assert (await conn.read_response()).status == 200
        assert await asyncio.to_thread(server.wait) == 0
        messages = []
        listener.settimeout(0.5)
        try:
            while True:
                messages.append(dict(
                    line.split("=", 1) for line in listener.recv(4096).decode().split("\n")))
        except TimeoutError:
            pass
    finally:
        listener.close()
    stopping = [m for m in messages if m.get("STOPPING") == "1"]
    assert stopping[0]["STATUS"] == "stopping: 1 worker draining"
    # the supervisor's: drain, grace, hooks, checkpoint, then 5 s before it kills a worker
    # that has not exited, and 2 s for the next message to arrive in time
    budget_us = (20 + 1 + 5 * 2 + 5 + 5 + 2) * 1e6
    first = int(stopping[0]["EXTEND_TIMEOUT_USEC"])
    assert budget_us - 1e6 < first <= budget_us
    ticks = stopping[1:]
    assert ticks and int(ticks[0]["EXTEND_TIMEOUT_USEC"]) < first
    assert messages[-1]["STATUS"] == "stopped, exit code 0"


async def test_a_notify_socket_nobody_reads_never_blocks_the_loop(serve, tmp_path):
    """systemd's queue full (here: a notify socket whose 10-datagram queue is filled and never
    read): each notification is dropped, logged once; requests and the stop go on."""
    address = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    filler = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    filler.setblocking(False)
    try:
        with contextlib.suppress(BlockingIOError):
            while True:  # the kernel's queue for it (net.unix.max_dgram_qlen) is now full
                filler.sendto(b"STATUS=filler", address)
        server = serve("tests.apps:basic", env={"NOTIFY_SOCKET": address})
        response = await asyncio.wait_for(server.get("/fast"), 10)
        assert response.status == 200
        server.signal()
        assert await asyncio.to_thread(server.wait) == 0
    finally:
        filler.close()
        listener.close()
    assert server.names().count("systemd.notify_failed") == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate is not installed")
async def test_socket_activation_serves_the_sockets_systemd_passes():
    """Socket activation, with systemd's own tool: it listens, execs graceful on the first
    connection with LISTEN_FDS/LISTEN_PID/LISTEN_FDNAMES; graceful serves that socket
    instead of binding (its --port is ignored), and the connection that woke it is
    answered."""
    port = _free_port()
    proc = subprocess.Popen(
        ["systemd-socket-activate", f"--listen=127.0.0.1:{port}", "--fdname=web",
         sys.executable, "-m", "graceful", "serve", "tests.apps:basic", "--port", "1",
         "--log-format", "json"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    server = ServerProcess.__new__(ServerProcess)
    server._attach(proc)
    try:
        for _ in range(200):  # the tool is listening once it says so
            with contextlib.suppress(AssertionError):
                server.wait_for("raw", timeout=0.05)
                break
        conn = None
        for _ in range(100):
            try:
                conn = await Connection.open(port)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.05)
        assert conn is not None
        response = await asyncio.wait_for(conn.request("GET", "/fast"), 20)
        assert response.status == 200
        assert server.wait_for("server.started")["port"] == port
        assert server.wait_for("supervisor.ready")["pid"] == proc.pid  # exec'd in place
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait) == 0
    finally:
        server.kill()


async def test_restart_tells_systemd_reloading_then_ready_from_one_pid(serve, tmp_path):
    """Type=notify(-reload): on SIGHUP the supervisor sends RELOADING=1 with MONOTONIC_USEC,
    then READY=1 once the new workers serve; every message comes from the supervisor's pid
    (workers never see NOTIFY_SOCKET), none names another MAINPID, and none reads as the
    service stopping until it is stopped: then STOPPING=1."""
    address = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    try:
        server = serve("tests.apps:basic", env={"NOTIFY_SOCKET": address})
        messages = [_receive(listener)]
        assert messages[0][1]["READY"] == "1"
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        server.signal(signal.SIGHUP)
        await asyncio.to_thread(server.wait_for, "restart.done", 30)
        listener.settimeout(5)
        while not (messages[-1][1].get("READY") == "1" and len(messages) > 1):
            messages.append(_receive(listener))
        during_restart = len(messages)
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
        listener.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            while True:
                messages.append(_receive(listener))
    finally:
        listener.close()
    assert {pid for pid, _ in messages} == {server.proc.pid}
    assert not any("MAINPID" in fields for _, fields in messages)
    restart = [fields for _, fields in messages[1:during_restart]]
    reloading = next(fields for fields in restart if fields.get("RELOADING") == "1")
    assert before <= int(reloading["MONOTONIC_USEC"]) <= before + 10e6
    assert restart[-1]["READY"] == "1"
    assert not any("STOPPING" in fields for fields in restart)
    assert any("STOPPING" in fields for _, fields in messages[during_restart:])


def _receive(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """A notify message and the pid that sent it (SCM_CREDENTIALS)."""
    data, ancillary, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = 0
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", value[:12])[0]
    return pid, dict(line.split("=", 1) for line in data.decode().split("\n") if line)


# exec graceful with `fd` as descriptor 3, LISTEN_PID its own pid (exec keeps the pid)
_EXEC_WITH_FD_3 = """import os, sys
os.dup2(int(sys.argv[1]), 3)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "graceful", *sys.argv[2:]])
"""


def _started_as_systemd_does(fd: int, name: str, env: dict[str, str],
                             *args: str) -> ServerProcess:
    """graceful serving the listening socket `fd`, passed as systemd passes it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _EXEC_WITH_FD_3, str(fd), "serve", "tests.apps:basic",
         "--port", "1", "--log-format", "json", *args],
        cwd=ROOT, pass_fds=[fd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **env, "LISTEN_FDS": "1", "LISTEN_FDNAMES": name})
    server = ServerProcess.__new__(ServerProcess)
    server._attach(proc)
    return server


def _stored(sock: socket.socket) -> tuple[dict[str, str], list[int]]:
    """One notify message and the descriptors it carried (SCM_RIGHTS)."""
    data, fds, _, _ = socket.recv_fds(sock, 4096, 8)
    return dict(line.split("=", 1) for line in data.decode().split("\n") if line), fds


async def test_the_fd_store_keeps_the_socket_for_the_next_process(serve, tmp_path):
    """FileDescriptorStoreMax= (systemd announces it as $FDSTORE): once serving, graceful
    hands systemd its listening socket (FDSTORE=1, FDNAME=graceful-0, SCM_RIGHTS). Here the
    fake notify socket keeps it, as systemd does across `systemctl restart`: a connection
    made after the first process exited waits in the queue (not refused), and a second
    process started with that descriptor as systemd starts it (LISTEN_FDS=1, LISTEN_PID,
    LISTEN_FDNAMES=graceful-0) answers it, and stores the same socket again."""
    address = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(10)
    kept: list[int] = []
    second = None
    env = {"NOTIFY_SOCKET": address, "FDSTORE": "4"}
    try:
        first = serve("tests.apps:basic", env=env)
        fields, kept = _stored(listener)
        assert fields == {"FDSTORE": "1", "FDNAME": "graceful-0"} and len(kept) == 1
        stored = socket.socket(fileno=os.dup(kept[0]))
        assert stored.getsockname()[1] == first.port
        assert stored.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        stored.close()
        assert _stored(listener)[0]["READY"] == "1"
        first.signal(signal.SIGTERM)
        assert await asyncio.to_thread(first.wait) == 0
        while not _stored(listener)[0].get("STATUS", "").startswith("stopped"):
            pass  # its stop's messages (the queue of a datagram socket is short)
        waiting = await Connection.open(first.port)  # queued: the store holds the socket
        waiting.send("GET", "/fast")
        second = _started_as_systemd_does(kept[0], "graceful-0", env)
        response = await asyncio.wait_for(waiting.read_response(), 20)
        assert response.status == 200
        assert second.wait_for("server.started")["port"] == first.port
        fields, again = _stored(listener)
        assert fields == {"FDSTORE": "1", "FDNAME": "graceful-0"} and len(again) == 1
        for fd in again:
            os.close(fd)
        second.signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait) == 0
    finally:
        listener.close()
        for fd in kept:
            os.close(fd)
        if second is not None:
            second.kill()


async def test_sockets_from_a_socket_unit_are_not_stored(tmp_path):
    """A socket systemd passed from a socket unit (its own name) is systemd's already: it
    is served, and not stored again (READY=1 is the first message)."""
    address = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(10)
    unit = socket.create_server(("127.0.0.1", 0))
    server = None
    try:
        server = _started_as_systemd_does(unit.fileno(), "web",
                                          {"NOTIFY_SOCKET": address, "FDSTORE": "4"})
        fields, fds = _stored(listener)
        assert fields["READY"] == "1" and fds == []
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait) == 0
    finally:
        listener.close()
        unit.close()
        if server is not None:
            server.kill()


async def test_socket_activation_without_a_metrics_socket_binds_metrics_bind(tmp_path):
    """A socket unit passes the app's socket only (no graceful-metrics, which a restart in
    place adds): --metrics-bind is bound as without systemd, and the unit's socket serves
    the app, not /metrics."""
    unit = socket.create_server(("127.0.0.1", 0))
    server = None
    try:
        server = _started_as_systemd_does(unit.fileno(), "web", {},
                                          "--metrics-bind", "127.0.0.1:0")
        metrics_port = server.wait_for("metrics.started")["port"]
        assert server.wait_for("server.started")["port"] == unit.getsockname()[1]
        assert metrics_port != unit.getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", metrics_port)
        writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
        page = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert page.startswith(b"HTTP/1.0 200") and b"graceful_phase" in page
        conn = await Connection.open(unit.getsockname()[1])
        assert (await asyncio.wait_for(conn.request("GET", "/fast"), 10)).status == 200
        conn.writer.close()
        server.signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.wait) == 0
    finally:
        unit.close()
        if server is not None:
            server.kill()
