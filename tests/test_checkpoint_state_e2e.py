"""The checkpoint keeps the state the app gives it.

1. A factory that creates `app[graceful.STATE]` itself keeps its dict: the restored keys
   are merged into it, its own initial values stay when there is no file yet.
2. An app that never touches the key uses `graceful.state(request)`: it runs under
   graceful (root app and sub-application alike), under pytest-aiohttp's aiohttp_client
   and under aiohttp's own web.run_app.
3. A sub-application with a state dict of its own is refused at start (exit 2).
4. Values JSON cannot hold (an int key, a datetime, a set, NaN, a tuple) are named by
   their key path at the periodic flush (`checkpoint.invalid`), the other keys are saved,
   the bad key keeps its last good value, and the stop exits 4.
5. `graceful.check_state(state)` says the same in an app's own tests.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import subprocess
import sys

import pytest

import graceful
from graceful import checkpoint as ckpt
from tests import apps
from tests.conftest import ROOT
from tests.rawhttp import get


async def test_state_created_by_the_factory_is_kept(serve, tmp_path):
    """1."""
    path = tmp_path / "s.json"
    first = serve("tests.apps:own_state", "--checkpoint", str(path))
    for expected in (b"1\n", b"2\n", b"3\n"):
        assert (await get(first.port, "/hit")).body == expected
    first.signal()
    assert await asyncio.to_thread(first.wait) == 0
    assert ckpt.read(path).state == {"hits": 3, "since": "factory"}
    second = serve("tests.apps:own_state", "--checkpoint", str(path))
    assert second.wait_for("checkpoint.restored")["keys"] == 2
    assert (await get(second.port, "/hit")).body == b"4\n"
    second.signal()
    assert await asyncio.to_thread(second.wait) == 0


async def test_helper_state_under_graceful_root_and_subapp(serve, tmp_path):
    """2. graceful.state(request) reaches the root's state from a sub-app's handler, and
    request.app[graceful.STATE] works there too."""
    path = tmp_path / "s.json"
    server = serve("tests.apps:helper_state", "--checkpoint", str(path))
    assert (await get(server.port, "/hit")).body == b"1\n"
    assert (await get(server.port, "/admin/hit")).body == b"2\n"
    assert (await get(server.port, "/admin/raw")).body == b'{"hits": 2}'
    server.signal()
    assert await asyncio.to_thread(server.wait) == 0
    assert ckpt.read(path).state == {"hits": 2}


async def test_helper_state_under_aiohttp_client(aiohttp_client):
    """2. pytest-aiohttp: nobody but the helper creates the state."""
    client = await aiohttp_client(apps.helper_state())
    for path, expected in (("/hit", "1\n"), ("/admin/hit", "2\n"), ("/hit", "3\n")):
        response = await client.get(path)
        assert response.status == 200 and await response.text() == expected


async def test_factory_state_under_aiohttp_client(aiohttp_client):
    """2. The factory's own dict is the one graceful.state() returns."""
    app = apps.own_state()
    client = await aiohttp_client(app)
    assert await (await client.get("/hit")).text() == "1\n"
    assert graceful.state(app) is app[graceful.STATE]
    assert graceful.state(app) == {"hits": 1, "since": "factory"}


async def test_helper_state_under_run_app(tmp_path):
    """2. aiohttp's own web.run_app serves the same app."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = ("from aiohttp import web; from tests import apps; "
            f"web.run_app(apps.helper_state(), host='127.0.0.1', port={port}, print=print)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        assert "Running on" in await asyncio.to_thread(proc.stdout.readline)
        assert (await get(port, "/hit")).body == b"1\n"
        assert (await get(port, "/admin/hit")).body == b"2\n"
    finally:
        proc.kill()
        proc.wait(10)


async def test_subapp_with_its_own_state_is_refused(serve, tmp_path):
    """3."""
    server = serve("tests.apps:subapp_own_state", "--checkpoint", str(tmp_path / "s.json"),
                   wait_started=False)
    assert await asyncio.to_thread(server.wait) == 2
    error = server.wait_for("process.failed")["error"]
    assert "/admin" in error and "graceful.STATE" in error and "\n" not in error


@pytest.mark.parametrize(("kind", "where"), [
    ("intkey", "state[42]"),
    ("datetime", 'state["bad"]["when"]'),
    ("set", 'state["bad"][1]'),
    ("nan", 'state["bad"]'),
    ("tuple", 'state["bad"]'),
])
async def test_values_json_cannot_hold_are_named_and_good_keys_kept(serve, tmp_path, kind,
                                                                     where):
    """4."""
    path = tmp_path / "s.json"
    server = serve("tests.apps:unjsonable", "--checkpoint", str(path),
                   "--checkpoint-interval", "0.05", "--log-level", "debug")
    for _ in range(3):
        await get(server.port, "/count")
    await get(server.port, "/set?key=bad&kind=good")
    flushed = await asyncio.to_thread(server.wait_for, "checkpoint.flushed", periodic=True)
    while ckpt.read(path).state.get("bad") != "fine":  # a periodic flush has it
        flushed = await asyncio.to_thread(server.wait_for, "checkpoint.flushed",
                                          generation=flushed["generation"] + 1)
    await get(server.port, f"/set?key=bad&kind={kind}")
    await get(server.port, "/count")
    invalid = await asyncio.to_thread(server.wait_for, "checkpoint.invalid")
    assert invalid["path"] == where, invalid
    server.signal()
    assert await asyncio.to_thread(server.wait) == 4
    state = ckpt.read(path).state
    assert state["count"] == 4 and state["log"] == [1, 2, 3, 4]
    assert state["bad"] == "fine"  # its last good value
    assert set(state) == {"count", "log", "bad"}
    final = [e for e in server.events if e.get("event") == "checkpoint.invalid"][-1]
    assert final["path"] == where and final.get("final") is True


def test_check_state_names_every_bad_path():
    """5."""
    good = {"a": [1, 2.5, "é", None, True, {"b": {}}], "n": 10**30}
    assert graceful.check_state(good) is None
    bad = {"ok": 1, 42: 1, "when": datetime.datetime(2026, 1, 1), "deep": {"s": {1, 2}},
           "nan": float("inf"), "t": (1,), "u": "\ud800", "sub": {3: "x"}}
    with pytest.raises(graceful.StateError) as caught:
        graceful.check_state(bad)
    paths = [problem.path for problem in caught.value.problems]
    assert paths == ["state[42]", 'state["when"]', 'state["deep"]["s"]', 'state["nan"]',
                     'state["t"]', 'state["u"]', 'state["sub"][3]']
    assert "datetime" in str(caught.value) and "\n" not in str(caught.value)


def test_state_helper_without_a_server():
    """2. A fresh app gets an empty dict, the same one every time."""
    from aiohttp import web

    app = web.Application()
    state = graceful.state(app)
    assert state == {} and graceful.state(app) is state is app[graceful.STATE]

