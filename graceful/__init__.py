"""graceful: serve an aiohttp application and stop it without losing a request or state.

Names are imported on first use, so that `python -m graceful` can take over the stop
signals before aiohttp is even imported (a SIGTERM during startup is then a clean stop).
"""

from __future__ import annotations

import importlib

# not `typing.TYPE_CHECKING`: importing typing is 3 to 5 ms of the moment before `graceful
# serve` holds its signals (cli/entry.py), in which a SIGHUP or SIGINT ends the process
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from graceful.bridge.stop import StopObserver, StopRequest, StopSource
    from graceful.checkpoint import StateError, check_state
    from graceful.config import Config
    from graceful.errors import (
        CheckpointError,
        ConfigError,
        ExitCode,
        GracefulError,
        StartupError,
    )
    from graceful.http.route_deadlines import drain_deadline
    from graceful.http.stopnotice import Stopping, stopping
    from graceful.lifecycle.appstate import STATE, state
    from graceful.lifecycle.checks import add_check, degraded
    from graceful.lifecycle.hooks import add_hook
    from graceful.lifecycle.runner import run
    from graceful.lifecycle.runtime import Phase, Runtime

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
    "add_check",
    "add_hook",
    "check_state",
    "degraded",
    "drain_deadline",
    "run",
    "state",
    "stopping",
]

_WHERE = {
    "STATE": "graceful.lifecycle.appstate",
    "CheckpointError": "graceful.errors",
    "Config": "graceful.config",
    "ConfigError": "graceful.errors",
    "ExitCode": "graceful.errors",
    "GracefulError": "graceful.errors",
    "Phase": "graceful.lifecycle.runtime",
    "Runtime": "graceful.lifecycle.runtime",
    "StartupError": "graceful.errors",
    "StateError": "graceful.checkpoint",
    "StopObserver": "graceful.bridge.stop",
    "StopRequest": "graceful.bridge.stop",
    "StopSource": "graceful.bridge.stop",
    "Stopping": "graceful.http.stopnotice",
    "add_check": "graceful.lifecycle.checks",
    "add_hook": "graceful.lifecycle.hooks",
    "check_state": "graceful.checkpoint",
    "degraded": "graceful.lifecycle.checks",
    "drain_deadline": "graceful.http.route_deadlines",
    "run": "graceful.lifecycle.runner",
    "state": "graceful.lifecycle.appstate",
    "stopping": "graceful.http.stopnotice",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'graceful' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
