"""`graceful bundle` and the executable it builds, on Linux: what runs PyInstaller and what
the frozen command line does are pure; the build itself, and the service run from the
bundle alone, are tested under Wine (tests/wine/test_wine_bundle.py).

1. The bundle's command line gets its baked target where the CLI wants MODULE:ATTR.
2. `service install` run from a bundle registers the executable itself, with recovery
   actions, and `service status` reads that command line back (fake SCM).
3. PyInstaller's arguments: the target and every graceful module but the test helpers;
   a local package's data files and modules taken by graceful itself.
4. What cannot be built is one line before any build: no Wine set-up, a missing
   --add-data source, a bad --add-data.
5. `service install` imports the target from --app-dir, not the installing shell's folder.
6. A service with workers run from a bundle starts each worker as the executable itself
   (`app.exe worker TARGET`): a bundle has no `-m graceful`.
7. `service reload` and a reload's new options read a bundle's service command line
   (`app.exe service-host NAME ...`, one argument shorter than `python -m MODULE NAME ...`).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from graceful.cli.main import main
from graceful.cli.service import service
from graceful.windows import bundle as b
from graceful.windows.frozen import HOST_COMMAND, argv_with_target
from tests.fake_win32 import FakeWin32

TARGET = "shopapp:create_app"


@pytest.mark.parametrize(("args", "expected"), [
    (["serve", "--port", "8080"], ["serve", TARGET, "--port", "8080"]),
    (["check", "--within", "30"], ["check", TARGET, "--within", "30"]),
    (["service", "install", "web", "--", "--port", "1"],
     ["service", "install", "web", "--", TARGET, "--port", "1"]),
    (["service", "install", "web", "--startup", "manual"],
     ["service", "install", "web", "--startup", "manual", "--", TARGET]),
    (["service", "stop", "web"], ["service", "stop", "web"]),
    (["checkpoint", "verify", "s.json"], ["checkpoint", "verify", "s.json"]),
    ([], []),
])
def test_1_the_target_is_baked_in(args, expected):
    """1."""
    assert argv_with_target(args, TARGET) == expected


def test_2_install_from_a_bundle_registers_the_executable(monkeypatch, tmp_path):
    """2."""
    exe = str(tmp_path / "shop.exe")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", exe)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # where tests.apps imports from
    fake = FakeWin32()
    args = argv_with_target(["service", "install", "Web", "--restart-on-failure", "10",
                             "--app-dir", str(tmp_path), "--", "--port", "9000"],
                            "tests.apps:basic")
    result = CliRunner().invoke(service, args[1:], obj=fake)
    assert result.exit_code == 0, result.output
    spec = fake.services["Web"]
    assert spec.argv[:3] == (exe, HOST_COMMAND, "Web")
    assert spec.argv[-4:] == ("--", "tests.apps:basic", "--port", "9000")
    assert spec.restart_delay_s == 10
    lines = CliRunner().invoke(service, ["status", "Web"], obj=fake).output.splitlines()
    assert any(line.startswith("  serve tests.apps:basic host=127.0.0.1 port=9000 ")
               for line in lines), lines
    assert "  recovery: restart after 10s, 3 times; counts reset after 86400s" in lines


def _bundle(tmp_path: Path, **kwargs) -> b.Bundle:
    return b.Bundle(target=TARGET, name="shop", app_dir=tmp_path / "app",
                    dist_dir=tmp_path / "dist", build_dir=tmp_path / "build", **kwargs)


def test_3_pyinstaller_arguments(tmp_path):
    """3."""
    (tmp_path / "app").mkdir()
    (tmp_path / "app/shopapp.py").write_text("")
    dep = tmp_path / "vendor/tinydep"
    (dep / "data").mkdir(parents=True)
    (dep / "__init__.py").write_text("")
    (dep / "parse.py").write_text("")
    (dep / "data/prices.json").write_text("{}")
    bundle = _bundle(tmp_path, paths=(tmp_path / "vendor",), collect=("tinydep", "yaml"))
    args = b.pyinstaller_args(bundle, tmp_path / "entry.py", str)
    pairs = set(itertools.pairwise(args))
    assert {("--hidden-import", "shopapp"), ("--hidden-import", "graceful.windows.frozen"),
            ("--hidden-import", "graceful.windows.service_host"),
            ("--hidden-import", "winloop"), ("--hidden-import", "tinydep"),
            ("--hidden-import", "tinydep.parse"), ("--collect-all", "yaml"),
            ("--add-data", f"{dep / 'data/prices.json'};tinydep/data"),
            ("--paths", str(tmp_path / "vendor")), ("--name", "shop")} <= pairs
    assert not [value for option, value in pairs
                if option == "--hidden-import" and value.startswith("graceful.testing")]
    assert ("--exclude-module", "graceful.pytest_plugin") in pairs
    assert "--onefile" in args and args[-1] == str(tmp_path / "entry.py")
    assert "--onedir" in b.pyinstaller_args(_bundle(tmp_path, onedir=True), Path("e"), str)
    assert _bundle(tmp_path, onedir=True).executable == tmp_path / "dist/shop/shop.exe"


@pytest.mark.parametrize(("args", "code", "message"), [
    ([TARGET], 1, "graceful bundle on linux runs PyInstaller under Wine: no Windows python"),
    ([TARGET, "--add-data", "nothere.txt:."], 2, "--add-data nothere.txt: no such file"),
    ([TARGET, "--add-data", "nothere.txt"], 2, "--add-data 'nothere.txt': expected SRC:DEST"),
])
def test_4_what_cannot_be_built_is_one_line(args, code, message, tmp_path, monkeypatch):
    """4."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRACEFUL_WINE_ROOT", str(tmp_path / "no-wine"))
    monkeypatch.setattr(sys, "platform", "linux")
    result = CliRunner().invoke(main, ["bundle", *args])
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("graceful bundle: error: ") and message in lines[-1], lines


def test_5_install_imports_the_target_from_app_dir(tmp_path, monkeypatch):
    """5. (A bundle installed from a shell whose folder Wine cannot map had a current
    folder that was no folder: the target was looked for there.)"""
    app = tmp_path / "app"
    app.mkdir()
    (app / "svcapp.py").write_text("from aiohttp import web\napp = web.Application()\n")
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()  # os.getcwd() fails from here on
    fake = FakeWin32()
    result = CliRunner().invoke(service, ["install", "Web", "--app-dir", str(app), "--",
                                          "svcapp:app"], obj=fake)
    assert result.exit_code == 0, result.output
    assert str(app) not in sys.path


def test_6_a_bundled_service_starts_its_workers_from_the_executable(monkeypatch, tmp_path):
    """6."""
    from graceful.windows.service_workers import worker_entry

    exe = str(tmp_path / "shop.exe")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", exe)
    assert worker_entry() == [exe]
    assert argv_with_target([*worker_entry()[1:], "worker", TARGET], TARGET) == [
        "worker", TARGET]  # what the bundle's command line hands to the CLI


def test_7_reload_reads_a_bundled_service(monkeypatch, tmp_path):
    """7."""
    from graceful.windows.service_workers import reread_for

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "shop.exe"))
    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # where tests.apps imports from
    fake = FakeWin32()
    for name, workers in (("One", "1"), ("Two", "3")):
        args = argv_with_target(["service", "install", name, "--app-dir", str(tmp_path),
                                 "--", "--workers", workers], "tests.apps:basic")
        assert CliRunner().invoke(service, args[1:], obj=fake).exit_code == 0
        fake.start_service(name)
    one = CliRunner().invoke(service, ["reload", "One"], obj=fake)
    assert one.exit_code == 2 and "One runs one worker" in one.output, one.output
    fallback = ["Two", "--app-dir", str(tmp_path), "--", "tests.apps:basic", "--workers", "2"]
    assert reread_for(fake, "Two", fallback)().workers == 3  # the SCM's, not the fallback


def test_a_venv_services_worker_entry_runs_the_command_line(monkeypatch):
    """A service installed from a venv starts its workers from the base interpreter with the
    venv's site-packages: that boot line runs graceful's command line (`--version` here);
    it named a module where a function was wanted after the package's relayout."""
    import subprocess
    import sys

    from graceful.windows.service_workers import worker_entry

    monkeypatch.setattr(sys, "base_prefix", sys.prefix + "-base")
    argv = worker_entry()
    assert argv[1] == "-c"
    done = subprocess.run([sys.executable, "-c", argv[2], "--version"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "version" in done.stdout, (done.stdout, done.stderr)
