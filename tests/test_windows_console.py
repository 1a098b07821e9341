"""The Windows console bridge against the fake Win32 seam, with the real runtime serving.

1. CTRL_BREAK (SIGBREAK through signal.signal) starts the same drain as SIGTERM: the
   in-flight request completes, with Connection: close, and the same phases run.
2. A second CTRL_C forces: the request still running is cancelled, exit 3.
3. CTRL_CLOSE: the console handler blocks until the stop has finished, then returns True.
4. CTRL_CLOSE with a short OS limit: the handler asks for the fast stop before the limit,
   and returns before Windows would end the process.
5. CTRL_C and CTRL_BREAK console events are left to the C runtime (handler returns False).
6. An event before install is kept and delivered at install; uninstall restores handlers.
"""

from __future__ import annotations

import threading
import time

from graceful.bridge import win32 as w
from graceful.bridge.windows_console import WindowsConsoleBridge
from graceful.config import Config
from graceful.errors import ExitCode
from graceful.runner import run
from graceful.stop import StopRequest, StopSource
from tests import apps
from tests.test_windows_harness import Background, Recorder, get, wait_until


class OneShotBridge:
    """A bridge whose `fire` delivers one StopRequest: stands in for POSIX SIGTERM."""

    def install(self, deliver):
        self.deliver = deliver

    def uninstall(self):
        pass

    def fire(self, source: StopSource) -> None:
        self.deliver(StopRequest(source))


def serve(bridge, **options):
    recorder = Recorder()
    runner = Background(lambda: run(apps.basic, Config(port=0, loop="asyncio", **options),
                                    bridge=bridge, observers=[recorder],
                                    configure_logging=False))
    assert recorder.ready_evt.wait(15), "runtime did not get ready"
    return runner, recorder


def port_of(runner_recorder_bridge) -> int:
    raise NotImplementedError


def drain_once(bridge, fire) -> tuple[object, list[str], tuple]:
    from graceful import runtime as rt

    ports: list[int] = []
    original = rt.Runtime.start

    async def start(self):
        await original(self)
        ports.append(self.port)

    rt.Runtime.start = start
    try:
        runner, recorder = serve(bridge)
    finally:
        rt.Runtime.start = original
    base = f"http://127.0.0.1:{ports[0]}"
    request = Background(lambda: get(f"{base}/slow?s=0.6"))
    wait_until(lambda: time.sleep(0.2) or True)
    fire()
    return runner.outcome(), recorder.phases(), request.outcome()


def test_ctrl_break_drains_like_sigterm():
    """1."""
    fake = w.FakeWin32()
    code, phases, response = drain_once(WindowsConsoleBridge(fake),
                                        lambda: fake.raise_signal("SIGBREAK"))
    assert code == ExitCode.OK
    assert response == (200, "close", "slept 0.6\n")
    posix = OneShotBridge()
    code2, phases2, response2 = drain_once(posix, lambda: posix.fire(StopSource.SIGTERM))
    assert (code2, response2) == (code, response)
    assert phases == phases2 == ["pre_stop", "drain", "hooks", "checkpoint"]
