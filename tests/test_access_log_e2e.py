"""--access-log: the JSON event, and the usual one-line form in console output."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.rawhttp import get

CONSOLE_SCRIPT = Path(sys.executable).with_name("graceful")
LINE = re.compile(r'127\.0\.0\.1 - "GET /fast HTTP/1\.1" 200 (\d+) \d+\.\d+ms')


def test_console_access_line_in_the_usual_form():
    """1. With --log-format console each request is one line, `REMOTE - "METHOD PATH
    HTTP/V" STATUS BYTES TIMEms` (no query string), after the timestamp and level; BYTES
    counts the headers too, as aiohttp's own access log (%b) does."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith("GRACEFUL_")}
    proc = subprocess.Popen([str(CONSOLE_SCRIPT), "serve", "tests.apps:basic", "--port", "0",
                             "--log-format", "console", "--access-log"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        lines = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            lines.append(proc.stderr.readline())
            if "server.started" in lines[-1]:
                break
        port = int(re.search(r"port=(\d+)", lines[-1]).group(1))
        assert asyncio.run(get(port, "/fast?token=s3cret")).status == 200
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=15)
        assert proc.returncode == 0
        access = [line for line in rest.splitlines() if "GET /fast" in line]
        assert len(access) == 1 and LINE.search(access[0]), rest
        assert "[info" in access[0] and "s3cret" not in rest and "http.access" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_json_access_event_keeps_its_fields(serve):
    """2. With JSON logs the event is `http.access` with its fields (and the new ones)."""
    server = serve("tests.apps:basic", "--access-log")
    assert asyncio.run(get(server.port, "/fast?token=s3cret")).status == 200
    event = server.wait_for("http.access", path="/fast")
    assert {k: event[k] for k in ("method", "path", "status", "remote", "version", "bytes")} \
        == {"method": "GET", "path": "/fast", "status": 200, "remote": "127.0.0.1",
            "version": "1.1", "bytes": event["bytes"]}
    assert event["bytes"] > len("fast\n")  # headers included, as aiohttp's %b
    assert event["took_ms"] >= 0
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
