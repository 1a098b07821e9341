"""The example systemd units in deploy/systemd are accepted by `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNITS = ROOT / "deploy" / "systemd"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_units_verify(tmp_path: Path) -> None:
    """The service and socket units, with ExecStart pointed at this checkout's graceful (the
    tool checks that the command exists), verify with nothing said about them."""
    graceful = Path(sys.executable).with_name("graceful")
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/opt/app/venv/bin/graceful", str(graceful))
        (tmp_path / unit.name).write_text(text.replace("/opt/app", str(tmp_path)))
    names = sorted(str(path) for path in tmp_path.iterdir())
    assert len(names) == 2
    result = subprocess.run(["systemd-analyze", "verify", *names], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    said = [line for line in (result.stdout + result.stderr).splitlines()
            if "graceful-app" in line]
    assert said == []
