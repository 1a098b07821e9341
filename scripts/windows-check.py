"""The Windows checks of the Wine suite, on a real Windows machine (what Wine cannot show:
how Windows spreads connections between workers, Task Manager's End task, its SCM).

    python scripts\\windows-check.py            console checks (run it in a console window)
    python scripts\\windows-check.py --service  also the service checks (elevated prompt)

From a checkout of graceful, with `pip install -e .[windows]`. Each check prints one line,
ok or FAILED with what it saw; the exit code is 1 if one failed. Everything it starts is
ended by its pid; the service it installs (GracefulWindowsCheck) is removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ["tests.wine.app:app", "--app-dir", str(ROOT), "--port", "0", "--log-format", "json",
       "--drain-timeout", "20", "--loop", "asyncio"]
SERVICE = "GracefulWindowsCheck"
failed: list[str] = []


def check(name: str, ok: bool, seen: object = "") -> None:
    print(f"{'ok' if ok else 'FAILED'}: {name}" + ("" if ok else f": {seen}"), flush=True)
    if not ok:
        failed.append(name)


class Log:
    """The JSON lines a process writes to `stream`, kept as they come."""

    def __init__(self, stream) -> None:  # type: ignore[no-untyped-def]
        self.events: list[dict] = []

        def read() -> None:
            for line in stream:
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(line))

        threading.Thread(target=read, daemon=True).start()

    def wait(self, name: str, timeout: float = 90, **match: object) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in list(self.events):
                if event.get("event") == name and all(event.get(k) == v
                                                      for k, v in match.items()):
                    return event
            time.sleep(0.1)
        raise SystemExit(f"FAILED: no {name} within {timeout:g}s")


def get(url: str, results: list, i: int) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            results[i] = (response.status, response.headers.get("Connection"),
                          response.read().decode().strip())
    except Exception as err:
        results[i] = repr(err)


def in_flight(url: str, n: int) -> tuple[list, list[threading.Thread]]:
    results: list = [None] * n
    threads = [threading.Thread(target=get, args=(url, results, i)) for i in range(n)]
    for thread in threads:
        thread.start()
    return results, threads


def console_checks() -> None:
    signal.signal(signal.SIGINT, lambda *args: None)  # the Ctrl+C below reaches us too
    serve = subprocess.Popen([sys.executable, "-m", "graceful", "serve", *APP, "--workers", "2"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        log = Log(serve.stderr)
        ready = log.wait("supervisor.ready")
        base = f"http://127.0.0.1:{log.wait('server.started')['port']}"
        # 1. a worker ended by TerminateProcess (Task Manager's End task) is replaced
        victim = ready["workers"][0]
        subprocess.run(["taskkill", "/F", "/PID", str(victim)], capture_output=True)
        exited = log.wait("worker.exited", timeout=30)
        check("a killed worker is logged", exited["worker_pid"] == victim, exited)
        log.wait("worker.ready", timeout=60, replaced=True)
        # 2. graceful restart --pid under load: nothing refused, lost or reset
        answers = under_load(f"{base}/pid?s=0.02", lambda: graceful(
            "restart", "--pid", str(ready["pid"])).returncode)
        restarted = answers.pop()
        check("graceful restart exits 0", restarted == 0, restarted)
        lost = [a for a in answers if not a.startswith("(200")]
        check(f"graceful restart under load: 0 refused, lost or reset of {len(answers)}",
              not lost, lost[:5])
        workers = log.wait("restart.done", timeout=30)["workers"]
        # 3. Ctrl+C with requests in flight on both workers
        results, threads = in_flight(f"{base}/pid?s=3", 8)
        time.sleep(1.5)
        ctypes.windll.kernel32.GenerateConsoleCtrlEvent(0, 0)  # type: ignore[attr-defined]
        code = serve.wait(60)
        if "-v" in sys.argv[1:]:
            print(*[json.dumps(e)[:200] for e in log.events], sep="\n")
        for thread in threads:
            thread.join(60)
        answered = [r for r in results if isinstance(r, tuple) and r[:2] == (200, "close")]
        check("Ctrl+C: every request in flight answered, Connection: close",
              len(answered) == len(results), results)
        pids = {int(r[2].split()[1]) for r in answered}
        check("Ctrl+C: requests in flight on both workers", pids == set(workers),
              (pids, workers))
        check("Ctrl+C: exit 0", code == 0, code)
    finally:
        if serve.poll() is None:
            serve.kill()


def under_load(url: str, action) -> list:  # type: ignore[no-untyped-def]
    """Clients on new connections (8 threads) while `action` runs; their answers, then
    what `action` returned."""
    stop = threading.Event()
    answers: list = []

    def load() -> None:
        while not stop.is_set():
            results: list = [None]
            get(url, results, 0)
            answers.append(str(results[0]))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    done = action()
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join(60)
    return [*answers, done]


def graceful(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "graceful", *args], capture_output=True,
                          text=True, timeout=300)


def service_checks() -> None:
    folder = Path(tempfile.mkdtemp(prefix="graceful-check-"))
    log_file = folder / "svc.log"
    graceful("service", "remove", "--stop", SERVICE)
    installed = graceful("service", "install", SERVICE, "--startup", "manual", "--log-file",
                         str(log_file), "--app-dir", str(ROOT), "--", *APP[:1], *APP[3:],
                         "--workers", "2")
    check("service install", installed.returncode == 0, installed.stderr)
    try:
        started = graceful("service", "start", SERVICE)
        check("service start", started.returncode == 0, started.stdout + started.stderr)
        port = next(json.loads(line)["port"] for line in _wait_line(log_file, "server.started"))
        answers = under_load(f"http://127.0.0.1:{port}/pid?s=0.02",
                             lambda: graceful("service", "reload", SERVICE))
        reloaded = answers.pop()
        check("service reload exits 0", reloaded.returncode == 0, reloaded.stderr)
        lost = [a for a in answers if not a.startswith("(200")]
        check(f"service reload under load: 0 refused, lost or reset of {len(answers)}",
              not lost, lost[:5])
        # the same reload from Windows' own SCM client (Wine's sc has no `control`)
        controlled = subprocess.run(["sc", "control", SERVICE, "129"], capture_output=True,
                                    text=True, timeout=60)
        check("sc control 129 accepted", controlled.returncode == 0, controlled.stdout)
        check("sc control 129 reloads",
              len(_wait_line(log_file, "restart.done", count=2)) >= 2)
        stopped = graceful("service", "stop", SERVICE)
        check("service stop exits 0", stopped.returncode == 0, stopped.stdout + stopped.stderr)
    finally:
        graceful("service", "remove", "--stop", SERVICE)


def _wait_line(path: Path, event: str, timeout: float = 120, count: int = 1) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = [line for line in path.read_text(errors="replace").splitlines()
                     if f'"event": "{event}"' in line]
            if len(lines) >= count:
                return lines
        time.sleep(0.2)
    raise SystemExit(f"FAILED: no {event} in {path}")


if __name__ == "__main__":
    if sys.platform != "win32":
        raise SystemExit("windows-check.py runs on Windows")
    console_checks()
    if "--service" in sys.argv[1:]:
        service_checks()
    print("all checks passed" if not failed else f"{len(failed)} failed: {failed}")
    sys.exit(1 if failed else 0)
