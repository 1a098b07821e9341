"""Under Wine, the Proactor loop's server closing just after Windows completed its pending
accept (graceful/http/proactor_accept.py):

1. asyncio's private names are still there and mean what the adapter says (`supported`,
   an accept whose Overlapped is no longer pending);
2. without the adapter, `Server.close()` loses that client: the accept is cancelled and
   its socket closed with the request unread (Windows resets the client; Wine ends the
   stream); the case graceful's stop used to hit under load;
3. with it, the connection is served first.
"""

from __future__ import annotations

import json

from tests.wine.conftest import ROOT, WIN_PY, wine, winpath


def run(mode: str) -> dict:
    result = wine(WIN_PY, winpath(ROOT / "tests/wine/proactor_close.py"), mode)
    assert result.returncode == 0, result
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_close_without_letting_the_accept_in_loses_the_client():
    """1, 2."""
    report = run("close")
    assert report["loop"] == "ProactorEventLoop" and report["supported"], report
    assert report["accept_completed"], report
    assert report["served"] == 0, report
    assert report["client_got"] in ("", "ConnectionResetError"), report


def test_close_after_letting_the_accept_in_serves():
    """3."""
    report = run("let-in")
    assert report["accept_completed"] and report["rounds"] >= 1, report
    assert (report["served"], report["client_got"]) == (1, "hello"), report
