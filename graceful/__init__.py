"""graceful: serve an aiohttp application and stop it without losing a request or state.

Names are imported on first use, so that `python -m graceful` can take over the stop
signals before aiohttp is even imported (a SIGTERM during startup is then a clean stop).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graceful.appstate import STATE, state
    from graceful.checkpoint import StateError, check_state
    from graceful.config import Config
    from graceful.errors import (
        CheckpointError,
        ConfigError,
        ExitCode,
        GracefulError,
        StartupError,
    )
    from graceful.hooks import add_hook
    from graceful.http.route_deadlines import drain_deadline
    from graceful.runner import run
    from graceful.runtime import Phase, Runtime
    from graceful.stop import StopObserver, StopRequest, StopSource
    from graceful.stopnotice import Stopping, stopping

__all__ = [
    "STATE",
    "CheckpointError",
    "Config",
    "ConfigError",
    "ExitCode",
    "GracefulError",
    "Phase",
    "Runtime",
    "StartupError",
    "StateError",
    "StopObserver",
    "StopRequest",
    "StopSource",
    "Stopping",
    "add_hook",
    "check_state",
    "drain_deadline",
    "run",
    "state",
    "stopping",
]

_WHERE = {
    "STATE": "graceful.appstate",
    "CheckpointError": "graceful.errors",
    "Config": "graceful.config",
    "ConfigError": "graceful.errors",
    "ExitCode": "graceful.errors",
    "GracefulError": "graceful.errors",
    "Phase": "graceful.runtime",
    "Runtime": "graceful.runtime",
    "StartupError": "graceful.errors",
    "StateError": "graceful.checkpoint",
    "StopObserver": "graceful.stop",
    "StopRequest": "graceful.stop",
    "StopSource": "graceful.stop",
    "Stopping": "graceful.stopnotice",
    "add_hook": "graceful.hooks",
    "check_state": "graceful.checkpoint",
    "drain_deadline": "graceful.http.route_deadlines",
    "run": "graceful.runner",
    "state": "graceful.appstate",
    "stopping": "graceful.stopnotice",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'graceful' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
