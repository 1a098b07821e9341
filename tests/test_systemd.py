"""systemd: READY=1 once serving, then STOPPING=1 with EXTEND_TIMEOUT_USEC from the budget."""

from __future__ import annotations

import asyncio
import socket

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
        conn = await Connection.open(server.port)
        conn.send("GET", "/slow?s=1.3")
        await asyncio.sleep(0.1)
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
    assert [m["STATUS"] for m in stopping][:2] == ["stopping: pre_stop", "stopping: drain"]
    budget_us = (20 + 1 + 5 * 2 + 5 + 2) * 1e6  # drain, grace, hooks, checkpoint, margin
    first = int(stopping[0]["EXTEND_TIMEOUT_USEC"])
    assert budget_us - 1e6 < first <= budget_us
    ticks = [m for m in messages if m.get("STATUS", "").startswith("draining:")]
    assert ticks and int(ticks[0]["EXTEND_TIMEOUT_USEC"]) < first
    assert messages[-1]["STATUS"] == "stopped, exit code 0"
