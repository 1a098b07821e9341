"""The served app: the real command line in a subprocess (real signals), or a Runtime on a
thread of the test process (fast; stops through the API)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graceful.testing.server import GracefulServer


class SubprocessServer(GracefulServer):
    """`python -m graceful serve TARGET --port 0 --log-format json ARGS`, run in `cwd` (the
    pytest rootdir by default), so TARGET is imported from there as `graceful serve` would,
    with no PYTHONPATH. With `marks` (the default) the app gets the middleware that lets
    `hold()` know a request is in its handler (graceful/testing/marks.py)."""

    def __init__(self, target: str, *args: str, env: dict[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, marks: bool = True) -> None:
        module = "graceful.testing.child" if marks else "graceful"
        super().__init__(_option(args, "--checkpoint"))
        proc = subprocess.Popen(
            [sys.executable, "-m", module, "serve", target, "--host", "127.0.0.1",
             "--port", "0", "--log-format", "json", *args],
            cwd=cwd if cwd is not None else os.getcwd(), env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self._attach(proc)

    @classmethod
    def following(cls, proc: subprocess.Popen[str],
                  checkpoint: str | Path | None = None) -> SubprocessServer:
        """A server object for a graceful process started otherwise (a shell, a wrapper),
        its stderr a text pipe."""
        server = cls.__new__(cls)
        GracefulServer.__init__(server, checkpoint)
        server._attach(proc)
        return server

    def _attach(self, proc: subprocess.Popen[str]) -> None:
        """Follow `proc`'s JSON log on stderr."""
        if not hasattr(self, "log"):  # made with __new__ (older tests): set up the base
            GracefulServer.__init__(self)
        self.proc = proc
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        try:
            for line in self.proc.stderr:
                self.log.feed(line)
        finally:
            self.log.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send `signum` now, counted or not: `stop()` spaces and waits."""
        self.proc.send_signal(signum)

    def _send_stop(self, how: Any, reason: str) -> None:
        self.proc.send_signal(_signal_number(how))

    def wait_exit(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)  # the rest of the log
        return code

    wait = wait_exit

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the supervisor and every worker it started (each a process group of its
        own: the supervisor's children, and those its log names), by pid."""
        workers = set(_children(self.proc.pid)) if self.proc.poll() is None else set()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for event in self.events:
            if event.get("event") in ("worker.started", "supervisor.ready"):
                pids = event.get("workers", [event.get("worker_pid")])
                workers.update(pid for pid in pids if isinstance(pid, int))
        workers.discard(self.proc.pid)
        for pid in workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)

    def close(self) -> None:
        super().close()
        self.kill()


class InProcessServer(GracefulServer):
    """A Runtime serving TARGET (MODULE:ATTR, an Application or a factory) on a loop of its
    own in a thread of this process. No signals: stop() goes through Runtime.stop with the
    matching StopSource. Its log is captured as JSON, as the subprocess's is; `process.exit`
    and the wait for threads at exit belong to the command line and are not seen here."""

    def __init__(self, target: Any, checkpoint: str | Path | None = None,
                 **options: Any) -> None:
        from graceful import logs
        from graceful.config import Config
        from graceful.lifecycle import loader
        from graceful.lifecycle.runtime import Runtime
        from graceful.testing.events import LineWriter
        from graceful.testing.marks import marked

        super().__init__(checkpoint)
        source = loader.import_target(target) if isinstance(target, str) else target
        root = logging.getLogger()
        self._root_logging = (root.handlers[:], root.level)
        logs.configure("json", options.pop("log_level", "info"), stream=LineWriter(self.log))
        config = Config(host="127.0.0.1", port=0, checkpoint=self.checkpoint_path, **options)
        self.runtime = Runtime(marked(source), config)
        self._code: int | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="graceful.testing", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            self._code = loop.run_until_complete(self._serve())
        except BaseException as err:
            self._error = err
            self.log.feed(f"graceful.testing: the runtime raised {err!r}\n")
        finally:
            self._ready.set()
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.wait(tasks, timeout=0.5))
            loop.close()
            self.log.close()
            self._done.set()

    async def _serve(self) -> int:
        await self.runtime.start()
        self._ready.set()
        return int(await self.runtime.wait_stopped())

    def started(self) -> InProcessServer:
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        super().started()
        return self

    def _send_stop(self, how: Any, reason: str) -> None:
        from graceful.bridge.stop import StopSource

        if isinstance(how, int):
            how = signal.Signals(how).name
        self.runtime.stop(reason, source=StopSource(str(how)))

    def wait_exit(self, timeout: float = 60.0) -> int:
        if not self._done.wait(timeout):
            raise TimeoutError(f"the runtime did not stop within {timeout:g}s")
        if self._error is not None:
            raise self._error
        assert self._code is not None
        return self._code

    def running(self) -> bool:
        return not self._done.is_set()

    def close(self) -> None:
        import structlog

        super().close()
        if self.running():
            for _ in range(3):  # graceful, force, abandon
                self._send_stop("API", "test teardown")
                if self._done.wait(1.0):
                    break
        self._done.wait(10)
        structlog.reset_defaults()
        root = logging.getLogger()
        root.handlers[:], level = self._root_logging
        root.setLevel(level)


def _children(pid: int) -> list[int]:
    """The children of `pid` (Linux's /proc; none elsewhere)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                found += [int(child) for child in
                          Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def _option(args: Sequence[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _signal_number(how: Any) -> int:
    if isinstance(how, int):
        return how
    try:
        return int(signal.Signals[str(how)])
    except KeyError:
        raise ValueError(f"a subprocess is stopped by a signal, not {how!r}; "
                         "serve in-process to use other stop sources") from None
