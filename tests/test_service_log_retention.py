"""The service log's retention, against the rotation code directly.

1. A file older than max_age is rotated at its next line, however small.
2. Rotated files are gzip-compressed (NAME.N.gz), off the writer's lock; at most `backups`
   are kept; every line is in exactly one file.
3. Rotated files older than the retention period are deleted at the next rotation.
4. A compression that fails leaves the rotated file whole and uncompressed; the writer
   says so once per cause in the log (`log.housekeeping_failed`) and never raises.
5. The service writes its log with the service policy (a day, gzip, 14 days), or the
   retention given to `graceful service install --log-retention-days`.
6. What a process that ended mid-compression left is finished at the next open: NAME.N
   compressed, a NAME.N whose .gz is whole deleted, a partial .gz.tmp deleted.
"""

from __future__ import annotations

import gzip
import json
import os
import time
from pathlib import Path

from click.testing import CliRunner

from graceful.bridge import win32 as w
from graceful.cli.service import service
from graceful.windows.log_retention import DAY_S, SERVICE_RETENTION, Retention
from graceful.windows.service_host import parse_host_args, retention_for
from graceful.windows.service_log import RotatingWriter
from tests.fake_win32 import FakeWin32
from tests.test_windows_service import start_service


def line(n: int) -> str:
    return json.dumps({"event": "line", "n": n, "pad": "x" * 40}) + "\n"


def numbers(folder: Path) -> list[int]:
    found = []
    for path in folder.iterdir():
        if not path.is_file():
            continue
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt") as f:
            found += [json.loads(raw)["n"] for raw in f if '"n"' in raw]
    return sorted(found)


class Wall:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_rotates_by_age(tmp_path):
    """1."""
    wall = Wall()
    writer = RotatingWriter(tmp_path / "x.log", max_bytes=10**9, wall=wall,
                            retention=Retention(max_age_s=3600))
    writer.write(line(0))
    wall.now += 3599
    writer.write(line(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log"]
    wall.now += 2
    writer.write(line(2))  # written, then the file is rotated: it is an hour old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log", "x.log.1"]
    writer.write(line(3))
    assert (tmp_path / "x.log").read_text() == line(3)
    assert numbers(tmp_path) == [0, 1, 2, 3]


def test_rotated_files_are_compressed_and_counted(tmp_path):
    """2."""
    writer = RotatingWriter(tmp_path / "x.log", max_bytes=300, backups=3,
                            retention=Retention(compress=True))
    for n in range(40):
        writer.write(line(n))
    writer.housekeeper.wait()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["x.log", "x.log.1.gz", "x.log.2.gz", "x.log.3.gz"]
    kept = numbers(tmp_path)
    assert kept == list(range(40 - len(kept), 40))  # the newest, none twice, none torn
    assert writer.dropped == 0


def test_compression_left_unfinished_is_finished_at_open(tmp_path):
    """6."""
    (tmp_path / "x.log.1").write_text(line(1))  # the exit came before its compression
    (tmp_path / "x.log.2").write_text(line(2))  # compressed, not yet deleted
    with gzip.open(tmp_path / "x.log.2.gz", "wt") as packed:
        packed.write(line(2))
    (tmp_path / "x.log.3.gz.tmp").write_bytes(b"\x1f\x8b")  # cut mid-way
    with gzip.open(tmp_path / "x.log.3.gz", "wt") as packed:
        packed.write(line(3))
    writer = RotatingWriter(tmp_path / "x.log", max_bytes=10_000, backups=3,
                            retention=Retention(compress=True))
    writer.housekeeper.wait()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["x.log", "x.log.1.gz", "x.log.2.gz", "x.log.3.gz"], names
    assert numbers(tmp_path) == [1, 2, 3]
    assert writer.housekeeper.failures == 0


def test_expired_files_are_deleted(tmp_path):
    """3."""
    wall = Wall()
    writer = RotatingWriter(tmp_path / "x.log", max_bytes=300, backups=10, wall=wall,
                            retention=Retention(compress=True, keep_s=14 * DAY_S))
    names = ["x.log", "x.log.1.gz", "x.log.2.gz", "x.log.3.gz"]
    for n in range(12):  # four lines a file: x.log.3.gz holds 0-3
        writer.write(line(n))
    writer.housekeeper.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    fortnight_ago = wall.now - 15 * DAY_S
    os.utime(tmp_path / "x.log.3.gz", (fortnight_ago, fortnight_ago))
    for n in range(12, 16):  # one more rotation: 0-3 become x.log.4.gz, expired
        writer.write(line(n))
    writer.housekeeper.wait()
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    assert numbers(tmp_path) == list(range(4, 16))
    assert writer.housekeeper.failures == 0


def test_failed_compression_keeps_the_file(tmp_path):
    """4: a directory where the compressed file's temporary should go."""
    (tmp_path / "x.log.1.gz.tmp").mkdir()
    writer = RotatingWriter(tmp_path / "x.log", max_bytes=300, backups=5,
                            retention=Retention(compress=True))
    for n in range(8):
        writer.write(line(n))
    writer.housekeeper.wait()
    assert (tmp_path / "x.log.1").exists() and not (tmp_path / "x.log.1.gz").exists()
    writer.write(line(8))
    notes = [json.loads(raw) for path in tmp_path.glob("x.log*") if path.is_file()
             for raw in path.read_text().splitlines()]
    failed = [e for e in notes if e["event"] == "log.housekeeping_failed"]
    assert len(failed) == 1 and "IsADirectoryError" in failed[0]["error"]  # once per cause
    assert numbers(tmp_path) == list(range(9)), sorted(p.name for p in tmp_path.iterdir())


def test_service_uses_the_retention_policy(tmp_path):
    """5."""
    _, host, runner, _ = start_service(tmp_path)
    assert host.writer is not None and host.writer.retention == SERVICE_RETENTION
    host.bridge.control(w.SERVICE_CONTROL_STOP)
    assert runner.outcome() == 0
    spec = install_with("--log-retention-days", "3")
    assert spec.argv[spec.argv.index("--log-retention-days") + 1] == "3"
    args = parse_host_args(spec.argv[spec.argv.index("Web"):])
    assert retention_for(args) == Retention(max_age_s=DAY_S, compress=True, keep_s=3 * DAY_S)


def install_with(*options: str) -> w.ServiceSpec:
    fake = FakeWin32()
    result = CliRunner().invoke(service, ["install", "Web", *options, "--", "tests.apps:basic"],
                                obj=fake)
    assert result.exit_code == 0, result.output
    return fake.services["Web"]
