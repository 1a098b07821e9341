"""The log sink: a write that fails is dropped, counted and reported once; never raised."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from graceful import logs
from graceful.windows.service_host import RotatingWriter


@pytest.fixture(autouse=True)
def _keep_root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


class FlakyWriter:
    """Fails `failures` writes (a full disk, a failed rotation), then works again."""

    def __init__(self, failures: int) -> None:
        self.failures, self.lines = failures, []

    def write(self, text: str) -> int:
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        self.lines.append(text)
        return len(text)


def test_failed_writes_are_dropped_counted_and_reported_once():
    fallback = io.StringIO()
    writer = FlakyWriter(failures=3)
    logs.configure("json", stream=writer, fallback=fallback)  # type: ignore[arg-type]
    log = structlog.get_logger()
    for n in range(5):
        log.info("tick", n=n)
    assert logs.dropped_lines() == 3
    assert [line.count("\n") for line in writer.lines] == [1, 1]  # one write per line
    assert '"n": 4' in writer.lines[-1]
    assert fallback.getvalue().count("\n") == 1 and "No space left" in fallback.getvalue()


def test_sink_wraps_the_service_rotating_writer(tmp_path: Path):
    """The Windows service's log writer: a closed file underneath is dropped, not raised."""
    writer = RotatingWriter(tmp_path / "svc.log")
    logs.configure("json", stream=writer)  # type: ignore[arg-type]
    structlog.get_logger().info("before")
    writer._file.close()
    structlog.get_logger().info("lost")
    assert logs.dropped_lines() == 1
    assert "before" in (tmp_path / "svc.log").read_text()
