"""The aiohttp versions graceful supports, checked without importing aiohttp (the supervisor
never imports it; the workers check the imported module itself: aiohttp_check.py)."""

from __future__ import annotations

import os
import re
import sys

from graceful.errors import ConfigError

# Keep equal to pyproject's dependency (a test compares them): the minors scripts/test-matrix
# runs the canary and the end-to-end tests on.
SUPPORTED = ">=3.11,<3.15"


def supported_range() -> tuple[tuple[int, int], tuple[int, int]]:
    low, high = SUPPORTED.removeprefix(">=").split(",<")
    return minor(low), minor(high)


def in_range(version: str) -> bool:
    low, high = supported_range()
    return low <= minor(version) < high


def refusal(version: str) -> str:
    return (f"aiohttp {version} is installed; graceful supports aiohttp{SUPPORTED} "
            f"(pip install 'aiohttp{SUPPORTED}')")


def ensure_installed_in_range() -> None:
    """ConfigError (exit 2), one line, unless the aiohttp distribution on the import path
    is in SUPPORTED (or there is none: the worker's import then says so)."""
    version = distribution_version()
    if version is not None and not in_range(version):
        raise ConfigError(refusal(version))


def distribution_version() -> str | None:
    """The version of the first aiohttp distribution on the import path, from its
    dist-info folder's name: what importlib.metadata finds first too, without its import
    (some 90 ms of the supervisor's start, before its first worker is started)."""
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("aiohttp-") and name.endswith((".dist-info", ".egg-info")):
                return name.removeprefix("aiohttp-").rsplit(".", 1)[0].split("-")[0]
    return None


def minor(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ConfigError(f"cannot read aiohttp's version {version!r}")
    return int(match[1]), int(match[2])
