"""A restart's successor imports its modules on a niced thread (graceful/preload.py), so that
its start takes little CPU from the old process serving meanwhile; its main thread, which
builds the app and serves, keeps its priority."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="thread priorities are Linux's")

PROBE = """
import json, os, sys, threading
from graceful import preload
preload.MODULES = ("probe_module",)
preload.in_successor()
import probe_module
print(json.dumps({"import": probe_module.SEEN,
                  "main": [threading.current_thread().name,
                           os.getpriority(os.PRIO_PROCESS, threading.get_native_id())]}))
"""
MODULE = """
import os, threading
SEEN = [threading.current_thread().name,
        os.getpriority(os.PRIO_PROCESS, threading.get_native_id())]
"""


def _run(tmp_path: Path, env: dict[str, str]) -> dict[str, list[object]]:
    (tmp_path / "probe_module.py").write_text(MODULE)
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=30, env={"PYTHONPATH": str(tmp_path), **env}, check=True)
    return json.loads(done.stdout)


def test_1_a_successor_imports_on_a_niced_thread_and_serves_at_its_priority(
        tmp_path: Path) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)  # the test runner may run niced itself
    seen = _run(tmp_path, {"GRACEFUL_RESTART_READY_FD": "9"})
    assert seen["import"] == ["graceful-preload", min(base + 10, 19)]
    assert seen["main"] == ["MainThread", base]


def test_2_a_first_process_imports_as_usual(tmp_path: Path) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    seen = _run(tmp_path, {})
    assert seen["import"] == seen["main"] == ["MainThread", base]
