"""`graceful service reload`'s reading of the service's log (the Wine suite runs it against
a real service: tests/wine/test_wine_service_workers.py 5), and the log's JSON wrapping of a
worker's raw lines.

1. A reload queued behind a running one (`queued_behind` 1) takes the outcome of the
   restart that served its request (`last_request` at or past its `request`), not the
   running one's.
2. A log from a supervisor without request numbers: the first outcome, as before.
3. A worker's raw lines become `worker.output` events; its JSON lines are kept as they are.
"""

from __future__ import annotations

import json

from graceful.bridge import win32 as w
from graceful.windows.service_output import as_json_lines
from graceful.windows.service_reload import _outcome


def _write(log, *events: dict) -> None:
    with open(log, "a") as file:
        for event in events:
            file.write(json.dumps(event) + "\n")


def _running() -> int:
    return w.SERVICE_RUNNING


def test_a_queued_reload_takes_its_own_restarts_outcome(tmp_path):
    log = tmp_path / "svc.log"
    _write(log, {"event": "restart.requested", "source": "SCM_RELOAD", "request": 1,
                 "queued_behind": 0})
    offset = log.stat().st_size
    _write(log,
           {"event": "restart.requested", "source": "SCM_RELOAD", "request": 2,
            "queued_behind": 1},
           {"event": "restart.done", "last_request": 1, "requests": 1},
           {"event": "restart.failed", "last_request": 2, "requests": 1, "reason": "mine"})
    assert _outcome(log, offset, 5, _running)["reason"] == "mine"


def test_a_log_without_request_numbers_gives_the_first_outcome(tmp_path):
    log = tmp_path / "svc.log"
    _write(log, {"event": "restart.requested", "source": "SCM_RELOAD"},
           {"event": "restart.done", "replaced": [1]},
           {"event": "restart.failed", "reason": "later"})
    assert _outcome(log, 0, 5, _running)["event"] == "restart.done"


def test_raw_lines_are_wrapped_and_json_lines_kept():
    kept = '{"event": "server.started", "level": "info"}'
    lines = as_json_lines(f"{kept}\nhello\r\n\nTraceback (most recent call last):\n".encode(),
                          "stderr", 42).splitlines()
    assert lines[0] == kept
    wrapped = [json.loads(line) for line in lines[1:]]
    assert [e["line"] for e in wrapped] == ["hello", "Traceback (most recent call last):"]
    assert {(e["event"], e["stream"], e["worker_pid"], e["level"]) for e in wrapped} == {
        ("worker.output", "stderr", 42, "warning")}
    assert all(e["timestamp"].endswith("Z") for e in wrapped)
