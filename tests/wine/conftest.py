"""The Windows suite that runs under Wine: real Windows CPython 3.12, real graceful, Linux
clients on 127.0.0.1. Collected only with GRACEFUL_WINE=1 (`scripts/test-wine` sets it after
provisioning with scripts/wine-setup.sh); the normal suite skips this folder."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if os.environ.get("GRACEFUL_WINE") != "1":
    collect_ignore_glob = ["test_*.py"]

WIN_PY = r"C:\Python312\python.exe"


def winpath(path: Path | str) -> str:
    """A Linux path as Wine sees it (drive Z: is /)."""
    return "Z:" + str(path).replace("/", "\\")


def wine(*args: str, timeout: float = 60,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a Windows program to its end; output through a pipe (python.exe under Wine cannot
    write to a regular file). `env`: another prefix's (WINEPREFIX), else ours."""
    result = subprocess.run(["wine", *args], stdin=subprocess.DEVNULL, capture_output=True,
                            timeout=timeout, env=os.environ if env is None else env)
    return subprocess.CompletedProcess(
        result.args, result.returncode,
        result.stdout.decode(errors="replace").replace("\r", ""),
        result.stderr.decode(errors="replace").replace("\r", ""))


@dataclasses.dataclass(frozen=True)
class ScQuery:
    """What `sc query NAME` says of a service (-1: a number it did not give)."""

    state: str  # RUNNING, STOP_PENDING, ...; sc's whole output when it names no state
    checkpoint: int
    wait_hint: int
    win32_exit_code: int
    service_exit_code: int


def sc_query(name: str, env: dict[str, str] | None = None) -> ScQuery:
    """The one parser of `sc query` output in the suite (`env`: another prefix's)."""
    out = wine("sc", "query", name, env=env).stdout
    fields = dict(re.findall(r"^\s*(\w+)\s*:\s*(.*?)\s*$", out, re.M))

    def number(key: str) -> int:
        words = fields.get(key, "").split()
        try:
            return int(words[0], 0)
        except (IndexError, ValueError):
            return -1

    state = fields.get("STATE", "").split()
    return ScQuery(state[-1] if state else out.strip(), number("CHECKPOINT"),
                   number("WAIT_HINT"), number("WIN32_EXIT_CODE"), number("SERVICE_EXIT_CODE"))


def service_state(name: str, env: dict[str, str] | None = None) -> str:
    """The SCM's state of service `name` as `sc query` names it (RUNNING, STOP_PENDING, ...)."""
    return sc_query(name, env).state


def wait_service_state(name: str, want: str, timeout: float = 30, poll: float = 0.2,
                       env: dict[str, str] | None = None) -> str:
    """The state once it is `want`, or the last one seen after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (now := service_state(name, env)) != want and time.monotonic() < deadline:
        time.sleep(poll)
    return now


def http_text(port: int, path: str, timeout: float) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return response.read().decode()


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            events.append({"event": "raw", "line": line})
    return events


def wait_for_event(path: Path, name: str, timeout: float = 60, after: int = 0,
                   **match: Any) -> dict[str, Any]:
    """The first event `name` (with the values in `match`) past the first `after` lines."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in read_events(path)[after:]:
            if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                return event
        time.sleep(0.1)
    raise AssertionError(f"no {name} in {path}:\n" + (path.read_text() if path.exists() else ""))


class Started:
    """A process this test started, ended by its own pid (its process group) if still alive."""

    def __init__(self, argv: list[str], **kwargs: Any) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=os.environ, **kwargs)

    def end(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def started() -> Iterator[Any]:
    procs: list[Started] = []

    def start(argv: list[str], **kwargs: Any) -> Started:
        proc = Started(argv, **kwargs)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.end()


class Driver:
    """tests/wine/driver.py in a console of its own (a pseudo-terminal: `script`)."""

    def __init__(self, start: Any, work: Path, mode: str, *serve: str) -> None:
        self.work = work
        command = shlex.join(["wine", WIN_PY, winpath(ROOT / "tests/wine/driver.py"),
                              winpath(work), mode, "--", *serve])
        self.proc = start(["script", "-qefc", command, "/dev/null"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.log = work / "log.jsonl"

    def port(self) -> int:
        return int(wait_for_event(self.log, "server.started")["port"])

    def go(self) -> None:
        (self.work / "go").write_text("go")

    def result(self, timeout: float = 90) -> dict[str, Any]:
        path = self.work / "result.json"
        deadline = time.monotonic() + timeout
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert path.exists(), "driver gave no result:\n" + (
            self.log.read_text() if self.log.exists() else "")
        self.proc.proc.wait(30)
        return json.loads(path.read_text())


class Requests:
    """Linux clients, each on a thread: GET url, keep (status, Connection, body)."""

    def __init__(self, urls: list[str]) -> None:
        import urllib.request

        self.results: list[Any] = [None] * len(urls)

        def one(i: int, url: str) -> None:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    self.results[i] = (response.status, response.headers.get("Connection"),
                                       response.read().decode())
            except Exception as err:  # the assertion shows it
                self.results[i] = repr(err)

        self.threads = [threading.Thread(target=one, args=(i, u), daemon=True)
                        for i, u in enumerate(urls)]
        for thread in self.threads:
            thread.start()

    def wait(self, timeout: float = 60) -> list[Any]:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(deadline - time.monotonic(), 0))
        return self.results
