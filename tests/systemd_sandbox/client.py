"""The client of the real-systemd tests, run inside the sandbox's network namespace
(`nsenter -t PID1 -n python client.py URL`), driven by one command a line on stdin, each
answered by one JSON line on stdout:

- `updates`: start the stream of counter updates; answers once the first one is answered;
- `stop-updates`: send no more updates (answers at once: those in flight may wait on the
  server);
- `tally`: wait for the updates in flight (bounded); answers `sent`, `answered`, and
  `max_value`, the highest count an answer carried;
- `slow SECONDS`: start a slow request; answers once its handler runs (its first line came);
- `pid`: the pid that serves a new connection;
- `result`: wait for the slow request's end (bounded); answers whether it was answered and
  when it ended (`ended`: time.monotonic(), the test's clock too).
The client exits at the end of stdin.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import aiohttp

UPDATERS = 2
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)


class Client:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.session = session
        self.sent = 0
        self.answered = 0
        self.max_value = 0
        self.errors: list[str] = []
        self.updating = False
        self.updaters: list[asyncio.Task[None]] = []
        self.first_answer = asyncio.Event()
        self.slow: asyncio.Task[str] | None = None
        self.slow_ended = 0.0

    async def _update(self) -> None:
        while self.updating:
            self.sent += 1
            try:
                async with self.session.post(self.url + "/count",
                                             timeout=REQUEST_TIMEOUT) as response:
                    text = await response.text()
                    if response.status == 200:
                        self.answered += 1
                        self.max_value = max(self.max_value, int(text))
                        self.first_answer.set()
                        continue
                    self.errors.append(f"status {response.status}")
            except (aiohttp.ClientError, TimeoutError) as err:
                self.errors.append(repr(err))
            await asyncio.sleep(0.01)  # an error repeats at once otherwise

    async def updates(self) -> dict[str, Any]:
        self.updating = True
        self.updaters = [asyncio.create_task(self._update()) for _ in range(UPDATERS)]
        await asyncio.wait_for(self.first_answer.wait(), 10)
        return {"updates": "running"}

    def stop_updates(self) -> dict[str, Any]:
        self.updating = False
        return {"stopping": True}

    async def tally(self) -> dict[str, Any]:
        await asyncio.wait_for(asyncio.gather(*self.updaters), 15)
        return {"sent": self.sent, "answered": self.answered, "max_value": self.max_value,
                "errors": self.errors[-5:], "error_count": len(self.errors)}

    async def start_slow(self, seconds: float) -> dict[str, Any]:
        started = asyncio.get_running_loop().create_future()
        self.slow = asyncio.create_task(self._slow(seconds, started))
        return {"slow": await asyncio.wait_for(started, 10)}

    async def _slow(self, seconds: float, started: asyncio.Future[str]) -> str:
        # A connection of its own: the updates' pool must not carry it.
        timeout = aiohttp.ClientTimeout(total=seconds + 30)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.get(f"{self.url}/slow?s={seconds}") as response:
                first = await response.content.readline()
                started.set_result(f"status {response.status} {first!r}")
                rest = await response.content.read()
                return f"status {response.status} {first + rest!r}"
        except (aiohttp.ClientError, TimeoutError) as err:
            if not started.done():
                started.set_result(f"failed {err!r}")
            return f"failed {err!r}"
        finally:
            self.slow_ended = time.monotonic()

    async def result(self) -> dict[str, Any]:
        if self.slow is None:
            return {"result": None}
        outcome = await asyncio.wait_for(self.slow, 40)
        return {"result": outcome, "answered": outcome == "status 200 b'started\\ndone\\n'",
                "ended": self.slow_ended}

    async def pid(self) -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session, \
                session.get(self.url + "/pid") as response:
            return {"pid": int(await response.text())}


async def main(url: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with aiohttp.ClientSession() as session:
        client = Client(url, session)
        while line := (await reader.readline()).decode().split():
            command, *args = line
            try:
                if command == "updates":
                    answer = await client.updates()
                elif command == "stop-updates":
                    answer = client.stop_updates()
                elif command == "tally":
                    answer = await client.tally()
                elif command == "slow":
                    answer = await client.start_slow(float(args[0]))
                elif command == "pid":
                    answer = await client.pid()
                elif command == "result":
                    answer = await client.result()
                else:
                    answer = {"error": f"unknown command {command!r}"}
            except (aiohttp.ClientError, TimeoutError, ValueError) as err:
                answer = {"error": repr(err)}
            print(json.dumps(answer), flush=True)
        client.updating = False
        for task in [*client.updaters, *([client.slow] if client.slow else [])]:
            task.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
