"""The application's state that survives a stop."""

from __future__ import annotations

from typing import Any

from aiohttp import web

# `app[graceful.STATE]`: a dict of JSON values, restored from the checkpoint at start and
# flushed at stop (and every --checkpoint-interval). Mutate it from handlers on the loop.
STATE: web.AppKey[dict[str, Any]] = web.AppKey("graceful.state", dict)
