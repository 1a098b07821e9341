"""Fixtures: the real CLI in a subprocess, its JSON log read line by line.

A thin shim over graceful's own pytest plugin (graceful/testing): the suite's `serve` is the
plugin's `graceful_server` run from the repository's root, so the plugin is tested by every
end-to-end test here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from graceful.lifecycle import loader
from graceful.testing import SubprocessServer
from tests.test_windows_harness import Handlers

ROOT = Path(__file__).resolve().parent.parent


class ServerProcess(SubprocessServer):
    """`python -m graceful serve TARGET --port 0 --log-format json ...`, from the root."""

    def __init__(self, target: str, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(target, *args, env=env, cwd=ROOT)


@pytest.fixture
def serve(graceful_server: Any) -> Iterator[Any]:
    """Start servers; every one still running at the end is killed by its pid."""
    def start(target: str, *args: str, env: dict[str, str] | None = None,
              wait_started: bool = True) -> ServerProcess:
        return graceful_server(target, *args, env=env, cwd=ROOT, wait_started=wait_started)

    yield start


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """The file tests/deployed.py reads its release from (RELEASE_FILE): what a test deploys
    before a restart ("v2", or a broken one: see that module)."""
    path = tmp_path / "release"
    path.write_text("v1\n")
    return path


@pytest.fixture
def handlers() -> Iterator[Handlers]:
    """Counts the requests that reach their handler in apps served in this process (the
    in-process runtimes of the Windows tests): `handlers.hold(url)`."""
    counting = Handlers()
    loader.on_built.append(counting.add_to)
    yield counting
    loader.on_built.remove(counting.add_to)


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _mount_tmpfs(where, size: str, *, read_only: bool = False) -> None:
    options = f"size={size}" + (",ro" if read_only else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {result.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    _mount_tmpfs(where, "64k")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)
