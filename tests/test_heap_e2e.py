"""The startup heap under load: a full collection of the cyclic garbage
collector stops the loop for as long as it walks the heap, and the startup heap (modules,
the app, its caches and restored state) is most of it.

1. While serving, what the app built at startup is frozen: a full collection walks only
   what was made since (it walked all 200,000 startup objects, 40-100 ms under load on a
   small machine, typically in the first wave of connections).
2. Embedded: frozen while serving, unfrozen after the stop (a process that serves again
   collects what the last serve left); an app that froze the heap itself, or disabled
   the collector, is left as it set them.
"""

from __future__ import annotations

import asyncio
import gc
import json

import graceful
from tests import apps
from tests.rawhttp import get


def test_startup_heap_is_frozen_while_serving(serve):
    """1."""
    server = serve("tests.apps:large_heap")
    response = asyncio.run(get(server.port, "/heap"))
    figures = json.loads(response.body)
    assert figures["frozen"] >= 200_000, figures
    assert figures["walked"] < 100_000, figures
    server.signal()
    assert server.wait() == 0


async def _frozen_while_serving() -> int:
    async with graceful.Runtime(apps.basic(), graceful.Config(port=0, health=False)):
        return gc.get_freeze_count()


def test_embedded_freeze_is_undone_and_the_apps_own_choice_kept():
    """2."""
    assert gc.get_freeze_count() == 0
    assert asyncio.run(_frozen_while_serving()) > 0
    assert gc.get_freeze_count() == 0

    gc.freeze()
    try:
        mine = gc.get_freeze_count()
        assert asyncio.run(_frozen_while_serving()) == mine
        assert gc.get_freeze_count() == mine
    finally:
        gc.unfreeze()

    gc.disable()
    try:
        assert asyncio.run(_frozen_while_serving()) == 0
        assert not gc.isenabled()
    finally:
        gc.enable()
