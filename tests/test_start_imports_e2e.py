"""What `graceful serve` imports before it serves (its start no slower than
bare aiohttp's plus 20 %). Not a timed test: it reads `sys.modules` in the served process.

1. A plain serve (no --config, --checkpoint, --metrics-bind, --reload, TLS) does not import
   what only those options, the other commands or structlog's pretty tracebacks need:
   rich and better_exceptions (structlog imports them at its own import when installed:
   rich alone was 45 to 80 ms of a 250 ms start), tomllib, the checkpoint package, the
   metrics, the service and timeline commands. A `rich` and a `better_exceptions` are put
   on the path here, so that the test does not depend on what the venv has installed.
   What it imports is imported with the collector off and frozen before the app's import
   (no young collection walks it: 10 ms); the app is imported with the collector on.
2. The start does not walk the whole heap: the collection before listening is of the young
   generations only (a full one was 10 to 18 ms of the bench app's start, 73 ms with the
   200,000-object test app, and found nothing to free).
   A serve run in-process (a test's CliRunner) leaves the collector as it found it.
3. A numeric host is bound without the resolver (as asyncio's create_server does), at the
   address the resolver gives; names and the other spellings still go to the resolver.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from graceful.cli import in_process
from graceful.config import Config
from graceful.http import listeners
from graceful.lifecycle.heap import Heap
from tests.conftest import ROOT, ServerProcess
from tests.rawhttp import get

APP = '''\
import gc
import sys

from aiohttp import web

AT_IMPORT = {"collector_on": gc.isenabled(), "frozen": gc.get_freeze_count()}


async def modules(request):
    return web.json_response({"modules": sorted(sys.modules), "at_import": AT_IMPORT})


def create_app():
    app = web.Application()
    app.router.add_get("/modules", modules)
    return app
'''

NOT_IMPORTED = {"rich", "better_exceptions", "tomllib", "encodings.idna", "graceful.checkpoint",
                "graceful.metrics.endpoint", "prometheus_client", "watchfiles",
                "graceful.cli.service", "graceful.cli.restart", "graceful.cli.timeline",
                "graceful.cli.check", "graceful.windows", "graceful.supervisor.supervisor",
                "graceful.supervisor.rolling", "graceful.supervisor.control"}


def _installed(folder: Path, name: str) -> None:
    """An empty package `name`, found first: once imported, it stays in sys.modules (its
    submodules are missing, and structlog's `except ImportError` takes that in its stride)."""
    (folder / name).mkdir()
    (folder / name / "__init__.py").write_text("")


def test_a_plain_serve_imports_nothing_it_does_not_use(tmp_path):
    """1."""
    (tmp_path / "app.py").write_text(APP)
    extras = tmp_path / "site"
    extras.mkdir()
    for name in ("rich", "better_exceptions"):
        _installed(extras, name)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(extras), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-m", "graceful", "serve", "app:create_app",
                             "--app-dir", str(tmp_path), "--port", "0", "--log-format", "json"],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    server = ServerProcess.following(proc)
    try:
        server.started()
        response = asyncio.run(get(server.port, "/modules"))
        assert response.status == 200
        figures = json.loads(response.body)
        imported = set(figures["modules"])
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    loaded = {name for name in imported
              if any(name == lazy or name.startswith(f"{lazy}.") for lazy in NOT_IMPORTED)}
    assert not loaded
    assert "structlog" in imported and "aiohttp" in imported  # what it does need
    # graceful's own imports were frozen before the app's, which runs with the collector on
    assert figures["at_import"]["collector_on"]
    assert figures["at_import"]["frozen"] > 20_000


def test_the_start_collects_the_young_generations_only():
    """2."""
    assert gc.isenabled() and gc.get_freeze_count() == 0
    full_collections = gc.get_stats()[2]["collections"]
    heap = Heap()
    heap.settle()
    try:
        assert gc.get_freeze_count() > 0
        assert gc.get_stats()[2]["collections"] == full_collections
    finally:
        heap.release()
    assert gc.get_freeze_count() == 0


def test_a_serve_in_process_leaves_the_collector_as_it_found_it(monkeypatch):
    """2. A worker's serve (what `graceful worker` runs), in this process."""
    monkeypatch.setattr(in_process, "_run", lambda *args: 0)
    # os._exit would end pytest itself
    monkeypatch.setattr(in_process, "exit_now", in_process.exit_flushed)
    for target, code in (("tests.apps:basic", 0), ("no_such_module:app", 2)):
        with pytest.raises(SystemExit) as exited:
            in_process.serve_in_process(target, ".", Config(), None)
        assert exited.value.code == code
        assert gc.isenabled() and gc.get_freeze_count() == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::1", "0:0:0:0:0:0:0:1", "::",
                                  "::ffff:127.0.0.1"])
def test_a_numeric_host_is_bound_where_the_resolver_would_bind_it(host):
    """3."""
    infos = socket.getaddrinfo(host, 8080, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    assert listeners._numeric(host, 8080) == (infos[0][0], infos[0][4])


@pytest.mark.parametrize("host", ["", "localhost", "127.1", "127.000.000.001", "fe80::1%lo"])
def test_other_hosts_go_to_the_resolver(host):
    """3."""
    assert listeners._numeric(host, 8080) is None
