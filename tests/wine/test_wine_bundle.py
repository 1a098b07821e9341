"""Under Wine: the app as one executable (`graceful bundle`), and the service's day run from
that executable alone, in a Wine prefix made for the test that has no Python at all (its
drive Z:, the way to this machine's files and so to the Windows python of the suite, is
removed).

1. the demo app bundles; `demo.exe check --within`, `--version` and `checkpoint verify`
   answer as the CLI
2. a test app with a dependency of its own (a local package with a data file): built
   without that package's data, the build fails in one line, naming the missing file
3. built with it: copied into the bare prefix, `shop.exe service install` registers the exe
   itself with recovery actions, `service start` runs it, a request in flight at `sc stop`
   is answered, the checkpoint is flushed, STOPPED with exit 0, the service log as today
4. in the same prefix, the bundle installed with `--workers 2`: `shop.exe service reload`
   while requests are in flight exits 0, every request is answered, new workers serve in
   the same service process; then `sc stop`: STOPPED with exit 0
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from graceful import checkpoint as ckpt
from tests.wine.conftest import (
    ROOT,
    Requests,
    read_events,
    sc_query,
    wait_for_event,
    wait_service_state,
    winpath,
)

APP = ROOT / "tests/wine/bundle_app"
NAME = "GracefulBundleTest"
BUILD_TIMEOUT_S = 600
# A build is one to three minutes on a busy 2-core machine (PyInstaller's analysis under
# Wine): more than the suite's default per-test timeout.
pytestmark = pytest.mark.timeout(2 * BUILD_TIMEOUT_S)


def bundle(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`graceful bundle ...` from Linux (PyInstaller runs in the suite's Windows python)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "graceful", "bundle", *args], cwd=work,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=BUILD_TIMEOUT_S)
    print(f"graceful bundle {' '.join(args)}: {time.monotonic() - started:.0f}s\n"
          f"{done.stdout}{done.stderr}")
    return done


def run(env: dict[str, str], *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["wine", *argv], stdin=subprocess.DEVNULL, capture_output=True,
                          env=env, timeout=timeout)
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(errors="replace").replace("\r", ""),
        done.stderr.decode(errors="replace").replace("\r", ""))


@pytest.fixture(scope="module")
def shop_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("shop")
    built = bundle(work, "shopapp:create_app", "--name", "shop", "--app-dir", str(APP),
                   "--paths", str(APP / "vendor"), "--collect", "tinydep")
    assert built.returncode == 0, built
    return work / "dist/shop.exe"


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A new Wine prefix with nothing installed, and no drive but C:."""
    prefix = tmp_path_factory.mktemp("bare") / "prefix"
    env = {**os.environ, "WINEPREFIX": str(prefix)}
    # A persistent wineserver of its own, detached from our pipes (which services.exe and
    # the server would otherwise inherit, and a captured run would wait for), as
    # scripts/wine-env.sh's wine_server_up does for the suite's prefix.
    quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
             "stderr": subprocess.DEVNULL, "env": env, "check": False}
    subprocess.run(["wineboot", "-i"], timeout=300, **quiet)  # as scripts/wine-setup.sh:
    subprocess.run(["wineserver", "-w"], timeout=300, **quiet)  # the first server ends,
    subprocess.run(["wineserver", "-p"], timeout=60, **quiet)  # then one that stays
    subprocess.run(["wineboot"], timeout=300, **quiet)  # with services.exe
    run(env, "reg", "add", r"HKCU\Software\Wine", "/v", "Version", "/t", "REG_SZ", "/d",
        "win10", "/f")
    (prefix / "dosdevices/z:").unlink()
    try:
        yield env
    finally:  # this prefix's server and its services: every process of the test's prefix
        subprocess.run(["wineserver", "-k"], timeout=60, **quiet)
        shutil.rmtree(prefix, ignore_errors=True)


def test_1_demo_bundle(tmp_path):
    """1."""
    built = bundle(tmp_path, "graceful.demo:factory", "--name", "demo")
    assert built.returncode == 0, built
    exe = winpath(tmp_path / "dist/demo.exe")
    assert re.search(r"built .*demo\.exe \(\d+\.\d MB in the file\) in \d+s; it loads its app",
                     built.stdout), built
    env = dict(os.environ)
    check = run(env, exe, "check", "--within", "60")
    assert check.returncode == 0 and "stop budget of graceful.demo:factory" in check.stdout
    assert "ok: the worst case" in check.stdout, check
    version = run(env, exe, "--version")
    assert version.returncode == 0 and "version" in version.stdout, version
    verify = run(env, exe, "checkpoint", "verify", winpath(tmp_path / "none.json"))
    assert verify.returncode == 1 and len(verify.stderr.strip().splitlines()) == 1, verify


def test_2_missing_data_is_one_line_at_build_time(tmp_path):
    """2."""
    no_data = bundle(tmp_path, "shopapp:create_app", "--app-dir", str(APP),
                     "--paths", str(APP / "vendor"))  # no --collect tinydep: no prices.json
    assert no_data.returncode == 2, no_data
    lines = no_data.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "graceful bundle: error: shopapp.exe was built but cannot load shopapp:create_app: "
        "graceful: error: shopapp:create_app raised FileNotFoundError"), no_data
    assert "prices.json" in lines[0], no_data


def test_3_service_day_from_the_bundle_alone(shop_exe, bare):
    """3."""
    drive_c = Path(bare["WINEPREFIX"]) / "drive_c"
    # Nothing of Python in the prefix but what the bundle carries; no drive to reach others.
    assert not [p for p in drive_c.rglob("python*") if "svc" not in p.parts]
    assert not (Path(bare["WINEPREFIX"]) / "dosdevices/z:").exists()
    (drive_c / "svc").mkdir()
    shutil.copy2(shop_exe, drive_c / "svc/shop.exe")  # "copy": the whole deployment
    exe, log = r"C:\svc\shop.exe", drive_c / "svc/shop.log"
    installed = run(bare, exe, "service", "install", NAME, "--startup", "manual",
                    "--restart-on-failure", "5", "--app-dir", r"C:\svc", "--",
                    "--port", "0", "--drain-timeout", "20", "--checkpoint",
                    r"C:\svc\state.json")
    assert installed.returncode == 0, installed
    # The SCM runs the executable itself, the target baked in, options resolved now.
    assert (f"installed {NAME}: C:\\svc\\shop.exe service-host {NAME} --app-dir C:\\svc "
            f"--log-file C:\\svc\\{NAME}.log -- shopapp:create_app --port 0") in installed.stdout
    log = drive_c / f"svc/{NAME}.log"
    try:
        status = run(bare, exe, "service", "status", NAME)
        assert "serve shopapp:create_app " in status.stdout, status
        # Asked for at install (tests/test_windows_bundle.py reads them back from the fake
        # SCM); Wine's SCM keeps no recovery actions and says so.
        assert "  recovery: not readable from this SCM" in status.stdout, status
        started = run(bare, exe, "service", "start", NAME)
        assert started.returncode == 0 and "RUNNING" in started.stdout, started
        port = wait_for_event(log, "server.started")["port"]
        held = Requests([f"http://127.0.0.1:{port}/api/price/tea?s=3"])
        time.sleep(1)  # the drain's own events below show that it was still in flight
        stopping = run(bare, "sc", "stop", NAME)
        assert "STOP_PENDING" in stopping.stdout, stopping
        assert wait_service_state(NAME, "STOPPED", 60, env=bare) == "STOPPED"
        assert sc_query(NAME, bare).win32_exit_code == 0
        assert held.wait() == [(200, "close", "tea 2.5\n")]
        assert ckpt.read(drive_c / "svc/state.json").state == {"served": 1}
        verify = run(bare, exe, "checkpoint", "verify", r"C:\svc\state.json")
        assert verify.returncode == 0 and verify.stdout.startswith("ok: "), verify
        events = read_events(log)
        names = [e["event"] for e in events]
        for name in ("service.starting", "server.started", "stop.requested", "drain.done",
                     "checkpoint.flushed", "service.exit"):
            assert name in names, names
        assert [e["code"] for e in events if e["event"] == "service.exit"] == [0]
        assert [e["source"] for e in events if e["event"] == "stop.requested"] == ["SCM_STOP"]
        assert any(e.get("in_flight") == 1 for e in events if e["event"] == "drain.progress")
    finally:
        removed = run(bare, exe, "service", "remove", "--stop", NAME)
    assert removed.returncode == 0, removed


def test_4_reload_from_the_bundle(shop_exe, bare):
    """4."""
    drive_c = Path(bare["WINEPREFIX"]) / "drive_c"
    if not (drive_c / "svc/shop.exe").exists():  # test 3 not run (-k)
        (drive_c / "svc").mkdir(exist_ok=True)
        shutil.copy2(shop_exe, drive_c / "svc/shop.exe")
    exe, name = r"C:\svc\shop.exe", f"{NAME}Reload"
    installed = run(bare, exe, "service", "install", name, "--startup", "manual",
                    "--app-dir", r"C:\svc", "--log-file", rf"C:\svc\{name}.log", "--",
                    "--workers", "2", "--port", "0",
                    "--loop", "asyncio", "--drain-timeout", "20")
    assert installed.returncode == 0, installed
    log = drive_c / f"svc/{name}.log"
    try:
        started = run(bare, exe, "service", "start", name)
        assert started.returncode == 0, started
        ready = wait_for_event(log, "supervisor.ready", timeout=120)
        port = ready["addresses"][0].rsplit(":", 1)[1]
        reloading = subprocess.Popen(["wine", exe, "service", "reload", name], env=bare,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        try:
            wait_for_event(log, "restart.requested")
            # served by the old workers (the new ones are not ready yet), still in flight
            # when those are told to drain: the new ones' start takes seconds, not 10
            held = Requests([f"http://127.0.0.1:{port}/api/price/tea?s=10"] * 2)
            wait_for_event(log, "worker.ready", worker=2, generation=1)
            assert held.results == [None, None], held.results
            said = reloading.communicate(timeout=180)[0].decode(errors="replace")
        finally:
            if reloading.poll() is None:
                reloading.kill()
        assert reloading.returncode == 0, said
        later = Requests([f"http://127.0.0.1:{port}/api/price/tea"] * 2).wait()
        assert [a[::2] for a in held.wait() + later] == [(200, "tea 2.5\n")] * 4, (held.results,
                                                                                   later)
        scm_pid = re.search(r"pid=(\d+)", started.stdout)
        now = re.search(r"pid=(\d+)", run(bare, exe, "service", "status", name).stdout)
        assert scm_pid and now and now.group(1) == scm_pid.group(1), (started, now)
        done = wait_for_event(log, "restart.done")
        assert done["replaced"] == ready["workers"] and len(done["workers"]) == 2, done
        assert done["pid"] == ready["pid"]  # the service's process is the same
        # the workers' lines in the service's log are JSON, as the service's own
        served = {e.get("pid") for e in read_events(log) if e["event"] == "server.started"}
        assert served == {*ready["workers"], *done["workers"]}, served
        assert "STOP_PENDING" in run(bare, "sc", "stop", name).stdout
        wait_service_state(name, "STOPPED", 60, env=bare)
        state = sc_query(name, bare)
        assert (state.state, state.win32_exit_code) == ("STOPPED", 0), state
        [end] = [e for e in read_events(log) if e["event"] == "supervisor.exit"]
        assert end["code"] == 0 and end["worker_codes"] == [0, 0], end
    finally:
        removed = run(bare, exe, "service", "remove", "--stop", name)
        print(log.read_text(errors="replace") if log.exists() else f"no {log}")
    assert removed.returncode == 0, removed
