"""Runs under Windows python (Wine): a client connects while the Proactor loop's AcceptEx is
posted, the accept completes before the loop polls again, then the server closes, with or
without `proactor_accept.let_accepted_in` first. Prints one JSON line: what the client got
and what the private names looked like."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time

from graceful.http import proactor_accept

let_in = sys.argv[1] == "let-in"


async def main() -> dict[str, object]:
    loop = asyncio.get_running_loop()
    served: list[bool] = []

    class Hello(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:  # the request, then the answer
            served.append(True)
            self.transport.write(b"hello")  # type: ignore[attr-defined]
            self.transport.close()

    server = await loop.create_server(Hello, "127.0.0.1", 0)
    await asyncio.sleep(0.2)  # the accept is posted
    port = server.sockets[0].getsockname()[1]
    futures = getattr(loop, "_accept_futures", None)
    report: dict[str, object] = {"loop": type(loop).__name__,
                                 "supported": proactor_accept.supported(loop)}
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # a request, as under load
    time.sleep(0.5)  # the loop does not run: the accept completes meanwhile, untaken
    future = futures.get(server.sockets[0].fileno()) if futures else None
    overlapped = getattr(future, "_ov", None)
    report["accept_completed"] = overlapped is not None and not overlapped.pending
    if let_in:
        report["rounds"] = await proactor_accept.let_accepted_in(server)
    server.close()
    await asyncio.sleep(0.5)
    try:  # the client is on this thread too: the loop has served by now
        report["client_got"] = client.recv(100).decode()
    except OSError as err:
        report["client_got"] = type(err).__name__
    client.close()
    report["served"] = len(served)
    return report


print(json.dumps(asyncio.run(main())))
