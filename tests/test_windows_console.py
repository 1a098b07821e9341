"""The Windows console bridge against the fake Win32 seam, with the real runtime serving.

1. CTRL_BREAK (SIGBREAK through signal.signal) starts the same drain as SIGTERM: the
   in-flight request completes, with Connection: close, and the same phases run.
2. A second CTRL_C (past the runtime's 0.5 s repeat filter) forces: the request still
   running is cancelled, exit 3.
3. CTRL_CLOSE: the console handler blocks until the stop has finished, then returns True.
4. CTRL_CLOSE with a short OS limit: the handler asks for the fast stop before the limit,
   and returns before Windows would end the process.
5. CTRL_C and CTRL_BREAK console events are left to the C runtime (handler returns False).
6. An event before install is kept and delivered at install; uninstall restores handlers.
"""

from __future__ import annotations

import time

from graceful.bridge import win32 as w
from graceful.bridge.stop import StopRequest, StopSource
from graceful.bridge.windows_console import WindowsConsoleBridge
from graceful.config import Config
from graceful.errors import ExitCode
from graceful.lifecycle.runner import run
from tests import apps
from tests.fake_win32 import FakeWin32
from tests.test_windows_harness import Background, Recorder, free_port


class OneShotBridge:
    """A bridge whose `fire` delivers one StopRequest: stands in for POSIX SIGTERM."""

    def install(self, deliver):
        self.deliver = deliver

    def uninstall(self):
        pass

    def fire(self, source: StopSource) -> None:
        self.deliver(StopRequest(source))


def serve(bridge, **options):
    """The real runtime on its own loop and thread; returns (runner, recorder, base URL)."""
    recorder = Recorder()
    port = free_port()
    runner = Background(lambda: run(apps.basic, Config(port=port, loop="asyncio", **options),
                                    bridge=bridge, observers=[recorder],
                                    configure_logging=False))
    assert recorder.ready_evt.wait(15), "runtime did not get ready"
    return runner, recorder, f"http://127.0.0.1:{port}"


def test_ctrl_break_drains_like_sigterm(handlers):
    """1."""
    results = []
    fake = FakeWin32()
    posix = OneShotBridge()
    for bridge, fire in [(WindowsConsoleBridge(fake), lambda: fake.raise_signal("SIGBREAK")),
                         (posix, lambda: posix.fire(StopSource.SIGTERM))]:
        runner, recorder, base = serve(bridge)
        [request] = handlers.hold(f"{base}/slow?s=0.6")
        fire()
        results.append((runner.outcome(), request.outcome(), recorder.phases()))
    assert results[0] == results[1]
    assert results[0] == (ExitCode.OK, (200, "close", "slept 0.6\n"),
                          ["pre_stop", "drain", "hooks", "checkpoint"])


def test_second_ctrl_c_forces(handlers):
    """2."""
    fake = FakeWin32()
    runner, recorder, base = serve(WindowsConsoleBridge(fake))
    [request] = handlers.hold(f"{base}/slow?s=30")
    fake.raise_signal("SIGINT")
    time.sleep(0.6)  # the runtime ignores a repeat within 0.5 s (one Ctrl+C seen twice)
    fake.raise_signal("SIGINT")
    assert runner.outcome(10) == ExitCode.DRAIN_DEADLINE
    assert "cancel" in recorder.phases()
    request.join(10)


def test_ctrl_close_waits_for_the_stop(handlers):
    """3."""
    fake = FakeWin32()
    runner, recorder, base = serve(WindowsConsoleBridge(fake))
    [request] = handlers.hold(f"{base}/slow?s=0.8")
    handler = Background(lambda: (fake.console_event(w.CTRL_CLOSE_EVENT), time.monotonic()))
    handled, returned_at = handler.outcome(10)
    assert handled is True
    assert runner.outcome() == ExitCode.OK
    assert request.outcome() == (200, "close", "slept 0.8\n")
    assert recorder.stopped_at is not None and returned_at >= recorder.stopped_at


def test_ctrl_close_switches_to_fast_stop_before_the_os_limit(handlers):
    """4."""
    fake = FakeWin32()
    bridge = WindowsConsoleBridge(fake, limits_s={w.CTRL_CLOSE_EVENT: 2.0}, margin_s=0.25,
                                  force_lead_s=0.75)
    runner, recorder, base = serve(bridge, drain_timeout=30)
    [request] = handlers.hold(f"{base}/slow?s=30")
    started = time.monotonic()
    handler = Background(lambda: fake.console_event(w.CTRL_CLOSE_EVENT))
    assert handler.outcome(5) is True
    took = time.monotonic() - started
    assert runner.outcome(5) == ExitCode.DRAIN_DEADLINE  # the fast stop cancelled it
    assert 1.0 <= took < 2.0, took  # force at 1.0 s, and back before the 2 s limit
    assert recorder.phases()[-3:] == ["cancel", "hooks", "checkpoint"]
    request.join(5)


def test_ctrl_c_and_break_console_events_go_to_the_c_runtime():
    """5."""
    fake = FakeWin32()
    delivered: list[StopRequest] = []
    bridge = WindowsConsoleBridge(fake)
    bridge.install(delivered.append)
    assert fake.console_event(w.CTRL_C_EVENT) is False
    assert fake.console_event(w.CTRL_BREAK_EVENT) is False
    assert delivered == []
    bridge.uninstall()


def test_early_event_is_kept_and_handlers_restored():
    """6."""
    fake = FakeWin32()
    before = dict(fake.signals)
    bridge = WindowsConsoleBridge(fake)
    bridge.capture()
    fake.raise_signal("SIGBREAK")
    delivered: list[StopRequest] = []
    bridge.install(delivered.append)
    assert [r.source for r in delivered] == [StopSource.CTRL_BREAK]
    fake.raise_signal("SIGINT")
    assert [r.source for r in delivered] == [StopSource.CTRL_BREAK, StopSource.CTRL_C]
    assert len(fake.console_handlers) == 1
    bridge.uninstall()
    assert fake.signals == before and fake.console_handlers == []
    assert fake.console_event(w.CTRL_CLOSE_EVENT) is False  # nobody waits any more
