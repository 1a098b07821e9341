"""graceful's pytest plugin (the `pytest11` entry point): installing graceful is enough.

    async def test_drains(graceful_server):
        server = graceful_server("myapp:create_app", "--drain-timeout", "5")
        held = await server.hold("/slow")      # returns once the handler runs
        server.stop()                          # SIGTERM; stop("SIGINT"); a second, a third
        await server.assert_held_answered()
        server.assert_closes_after_stop()
        server.assert_exit(0)
        server.assert_timeline(budget_s=2)

Everything it starts is ended at the end of the test, by its own pid. It defines no event
loop and no hooks, so it sits beside pytest-aiohttp (and pytest-asyncio) in one session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from graceful.testing import GracefulServer


@pytest.fixture
def graceful_server(request: pytest.FixtureRequest) -> Iterator[Callable[..., GracefulServer]]:
    """Start the app `target` with graceful and return the server object once it serves.

    `graceful_server("pkg.app:factory", "--drain-timeout", "5")` runs the real command line
    in a subprocess (real signals), in the pytest rootdir unless `cwd=` says otherwise, with
    `env=` added to the environment. `graceful_server(target_or_app, in_process=True,
    drain_timeout=5)` runs a Runtime on a thread of the test process: faster, no signals,
    options are Config fields. `wait_started=False` returns before `server.started`.
    """
    from graceful.testing import InProcessServer, SubprocessServer

    started: list[GracefulServer] = []

    def start(target: Any, *args: str, in_process: bool = False, wait_started: bool = True,
              **options: Any) -> GracefulServer:
        server: GracefulServer
        if in_process:
            if args:
                raise TypeError("in-process options are Config fields (drain_timeout=5), "
                                "not command-line arguments")
            server = InProcessServer(target, **options)
        else:
            options.setdefault("cwd", request.config.rootpath)
            server = SubprocessServer(target, *args, **options)
        started.append(server)
        return server.started() if wait_started else server

    yield start
    for server in started:
        server.close()
