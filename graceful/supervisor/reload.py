"""`--reload`, for development: a saved Python file under the app's folder restarts the
workers (graceful/supervisor/rolling.py), so a request in flight during a save still
completes, and new code that does not import or start leaves the old workers serving, the
error shown in `restart.failed`. A save during a restart queues the next one: the last
save is what serves. Only `*.py` files count (as uvicorn's default): the app's own log,
checkpoint or upload files do not restart it. Uses the `watchfiles` package
(the `reload` extra; `pip install watchfiles` installs it alone).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graceful.logs import get_logger

log = get_logger()


def app_folder(target: str, app_dir: str | None) -> Path:
    """The folder of the top-level package (or module) of MODULE:ATTR, found without
    importing it (the supervisor never runs the app's code); the app dir if not found."""
    base = Path(app_dir or ".").resolve()
    top = target.partition(":")[0].split(".")[0]
    sys.path.insert(0, str(base))
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    finally:
        sys.path.remove(str(base))
    origin = spec.origin if spec is not None else None
    if origin is None or not os.path.isabs(origin):
        return base
    return Path(origin).resolve().parent


async def watch(folder: Path, restart: Callable[[str], Any]) -> None:
    """Until cancelled: each change (a burst of saves is one) asks `restart` for one."""
    import watchfiles  # its presence is checked at the start (graceful/supervisor/start.py)

    log.info("reload.watching", folder=str(folder), files="*.py")
    stop = asyncio.Event()
    try:
        async for changes in watchfiles.awatch(folder, watch_filter=watchfiles.PythonFilter(),
                                               stop_event=stop, raise_interrupt=False):
            files = sorted({str(Path(path).relative_to(folder)) for _, path in changes})
            log.info("reload.changed", files=files[:10], count=len(files))
            restart("RELOAD")
    finally:
        stop.set()
