"""The aiohttp versions graceful supports, checked without importing aiohttp (the supervisor
never imports it; the workers check the imported module itself: aiohttp_check.py)."""

from __future__ import annotations

import importlib.metadata
import re

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
    try:
        version = importlib.metadata.version("aiohttp")
    except importlib.metadata.PackageNotFoundError:
        return
    if not in_range(version):
        raise ConfigError(refusal(version))


def minor(version: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ConfigError(f"cannot read aiohttp's version {version!r}")
    return int(match[1]), int(match[2])
