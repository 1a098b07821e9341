"""What a real browser sees of restarts: headless Chromium on a page that holds the stream
of examples/sse.py, a websocket that comes back at 1012 and a fetch loop, through three
restarts (SIGHUP) of `graceful serve --workers 2`.

1. No fetch fails; the fetches move to the new workers.
2. The stream misses no event and repeats none: its ids run on without a gap across every
   restart. A restart ends it cleanly ("bye", `retry: 0`), once, or twice when the
   reconnection reaches an old worker through another kept-alive connection; each time the
   EventSource fires "error" and reconnects at once (readyState CONNECTING, never CLOSED).
3. The websocket is closed with 1012 only, cleanly, and reconnects to a new worker.
4. Chromium itself reports no failed request and no console error.

Playwright drives Debian's Chromium (`executable_path`; its own browser download is not
used). Against a bare `chromium --headless` whose page posts its record back to the server:
the test also sees what the page's JavaScript cannot (Chromium's failed requests and
console errors), waits on the page's state instead of a sleep, and a wait that times out
says what the page saw. Skipped only where no Chromium is installed (scripts/test installs
it).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright
from playwright.async_api import TimeoutError as PageTimeout

CHROMIUM = (os.environ.get("GRACEFUL_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser"))
RESTARTS = 3

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium: Debian's chromium package (scripts/test installs "
    "it) or GRACEFUL_CHROMIUM=/path/to/chrome")


# What the page saw, short enough for a failure message.
SUMMARY = """() => ({sse: {...seen.sse, ids: seen.sse.ids.slice(-5)},
                 ws: {...seen.ws, hellos: seen.ws.hellos},
                 fetch: {ok: seen.fetch.ok, failed: seen.fetch.failed}})"""


async def wait_until(page: Page, condition: str, timeout_s: float = 30.0) -> None:
    """Wait for a condition on the page's record; on a timeout, say what the page saw."""
    try:
        await page.wait_for_function(condition, timeout=timeout_s * 1000)
    except PageTimeout:
        seen = await page.evaluate(SUMMARY)
        raise AssertionError(f"not within {timeout_s:g}s: {condition}\n"
                             f"the page saw {seen}") from None


def gaps_and_repeats(ids: list[int]) -> tuple[list[tuple[int, int]], list[int]]:
    """The runs of ids missing between consecutive events, and the ids seen twice."""
    pairs = list(itertools.pairwise(ids))
    gaps = [(before + 1, after - 1) for before, after in pairs if after > before + 1]
    repeats = [after for before, after in pairs if after <= before]
    return gaps, repeats


async def test_a_browser_sees_no_error_and_misses_no_event_through_restarts(serve: Any) -> None:
    """1-4."""
    server = serve("tests.browser.app:create_app", "--workers", "2")
    serving = server.wait_for("supervisor.ready")["workers"]
    generations = [serving]
    failed_requests: list[str] = []
    console_errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await browser.new_page()
            page.on("requestfailed", lambda r: failed_requests.append(
                f"{r.method} {r.url}: {r.failure}"))
            page.on("console", lambda m: console_errors.append(m.text)
                    if m.type == "error" else None)
            page.on("pageerror", lambda error: console_errors.append(str(error)))
            await page.goto(f"{server.url}/")
            await wait_until(
                page, "seen.sse.ids.length >= 5 && seen.ws.echoes >= 3 && seen.fetch.ok >= 5")
            for restart in range(1, RESTARTS + 1):
                server.signal(signal.SIGHUP)
                serving = (await server.event("restart.done", 90, replaced=serving))["workers"]
                generations.append(serving)
                # back on the new workers: the stream, the websocket and the fetches
                await wait_until(
                    page, f"seen.sse.opens > {restart} && seen.ws.opens > {restart}"
                    f" && {serving}.includes(seen.fetch.pids.at(-1))")
            await asyncio.sleep(1)  # ten more events from the last workers
            seen = await page.evaluate("seen")
        finally:
            await browser.close()
    server.stop()
    assert await server.exited() == 0

    fetch, sse, ws = seen["fetch"], seen["sse"], seen["ws"]
    assert fetch["failed"] == [], fetch["failed"]
    assert fetch["pids"][-1] in generations[-1]

    gaps, repeats = gaps_and_repeats(sse["ids"])
    assert (gaps, repeats) == ([], []), f"missed {gaps}, repeated {repeats}"
    assert len(sse["ids"]) >= 5 * (RESTARTS + 1)
    # Each restart ends the stream once; its reconnection may reach an old worker once more
    # (a bound measured before the keep-alive connections moved to the new workers at a
    # restart: test_restart_clients_e2e::
    # test_an_sse_reconnection_on_the_same_connection_is_served_by_a_new_worker).
    assert RESTARTS <= len(sse["byes"]) <= 2 * RESTARTS, sse["byes"]
    assert set(sse["byes"]) == {"server restarting"}
    assert sse["errors"] == [0] * len(sse["byes"])  # reconnections: CONNECTING, not CLOSED
    assert sse["opens"] == len(sse["byes"]) + 1

    # Each restart closes the websocket once with 1012; as the stream's, its reconnection may
    # reach the other old worker, not yet past its listener's close, and be closed once more
    assert RESTARTS <= len(ws["closes"]) <= 2 * RESTARTS, ws["closes"]
    assert all(close == {"code": 1012, "reason": "server stopping", "clean": True}
               for close in ws["closes"]), ws["closes"]
    assert (ws["opens"], ws["errors"]) == (len(ws["closes"]) + 1, 0)
    held_by = [int(hello.split()[1]) for hello in ws["hellos"]]
    workers_ever = {pid for workers in generations for pid in workers}
    assert set(held_by) <= workers_ever, f"websockets held by {held_by}, workers {generations}"
    assert held_by[-1] in generations[-1], (held_by, generations)
    assert ws["echoes"] > 0

    assert failed_requests == [], failed_requests
    assert console_errors == [], console_errors
