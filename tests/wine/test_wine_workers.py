"""Under Wine: `graceful serve --workers 2` on Windows, a supervisor and two workers that
were handed the listening socket with socket.share (graceful/supervisor/windows_spawn.py).

a. Ctrl+C in the console (GenerateConsoleCtrlEvent to every process on it) reaches the
   supervisor only (the workers have no console); it tells both workers, which drain: the
   requests in flight are answered with Connection: close, both exit 0, and so does the
   supervisor.
b. A worker ended by TerminateProcess (taskkill /F, Task Manager) while clients keep coming
   is logged `worker.exited` and replaced; every request is answered meanwhile.
c. `graceful restart --pid` (over the supervisor's named pipe) while clients keep coming on
   new connections and on keep-alive ones: none refused, lost or reset; new workers serve.
d. A helper process each worker's app started in on_startup and never stopped lives through
   its worker's drain, and ends once that worker has exited (the worker's Job object):
   nothing is left running after Ctrl+C.
e. `--workers 2 --checkpoint` is refused as on POSIX: exit 2, the same one line, nothing
   started.
f. More connections than select() takes (512) on the default loop of a worker: each worker
   serves up to its cap and the others wait in the accept queue, none reset, no worker
   dies; connections that close let waiting ones in.
g. A MODULE whose import raises: exit 2 and the import error's line, as with one worker;
   the workers leave without the interpreter's teardown, which crashed them (0xC0000005,
   "Fatal Python error: _enter_buffered_busy ... <stdin>") while their orders' thread read.
"""

from __future__ import annotations

import http.client
import resource
import socket
import subprocess
import sys
import threading
import time

from tests.wine.conftest import Driver, Requests, read_events, wait_for_event, winpath


def serve_args(*extra: str, loop: str = "winloop") -> list[str]:
    return ["tests.wine.app:app", "--workers", "2", "--port", "0", "--log-format", "json",
            "--loop", loop, "--drain-timeout", "20", *extra]


def events(log, name: str) -> list[dict]:
    return [e for e in read_events(log) if e.get("event") == name]


def test_a_ctrl_c_drains_both_workers(tmp_path, started):
    """a."""
    driver = Driver(started, tmp_path, "ctrl-c", *serve_args())
    ready = wait_for_event(driver.log, "supervisor.ready", timeout=90)
    assert len(ready["workers"]) == 2
    base = f"http://127.0.0.1:{driver.port()}"
    requests = Requests([f"{base}/pid?s=2.5"] * 8)
    time.sleep(1.0)  # in flight
    driver.go()
    result = driver.result()
    assert result["sent"] == 1 and result["exit"] == 0, result
    answers = requests.wait()
    assert all(isinstance(a, tuple) and a[:2] == (200, "close") for a in answers), answers
    pids = {int(a[2].split()[1]) for a in answers}
    # Wine gives every connection on a shared listening socket to one of the processes
    # accepting on it (its choice, whatever the loop): which worker drains the requests is
    # Wine's; scripts/windows-check.py checks the spread on real Windows
    assert pids <= set(ready["workers"]), (pids, ready)
    draining = {e["pid"] for e in events(driver.log, "drain.progress") if e["in_flight"]}
    assert draining & pids, draining
    [stopping] = events(driver.log, "supervisor.stopping")
    assert stopping["source"] == "CTRL_C"
    told = [(e["pid"], e["source"]) for e in events(driver.log, "stop.requested")]
    assert sorted(told) == sorted((pid, "CTRL_C") for pid in ready["workers"]), told
    [end] = events(driver.log, "supervisor.exit")
    assert end["code"] == 0 and end["worker_codes"] == [0, 0]


class Load:
    """Clients on new connections, one after the other on each thread, until stopped."""

    def __init__(self, url: str, threads: int = 4) -> None:
        import threading
        import urllib.request

        self.answers: list[tuple[float, str]] = []  # (when, "pid N" or the error)
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.is_set():
                try:
                    with urllib.request.urlopen(url, timeout=20) as response:
                        said = response.read().decode().strip()
                except Exception as err:  # counted, shown by the assertion
                    said = repr(err)
                self.answers.append((time.monotonic(), said))

        self._threads = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> list[tuple[float, str]]:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
        return self.answers


class KeepAlive:
    """One client on one connection, reopened only when the server says Connection: close."""

    def __init__(self, port: int) -> None:
        self.errors: list[str] = []
        self.served = 0
        self.reopened = 0
        self._stop = threading.Event()

        def run() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            while not self._stop.is_set():
                try:
                    conn.request("GET", "/pid?s=0.02")
                    response = conn.getresponse()
                    response.read()
                    self.served += 1
                    if response.getheader("Connection") == "close":
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                        self.reopened += 1
                except Exception as err:  # counted, shown by the assertion
                    self.errors.append(repr(err))
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            conn.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def test_b_killed_worker_is_replaced_under_load(tmp_path, started):
    """b."""
    from tests.wine.conftest import wine

    driver = Driver(started, tmp_path, "ctrl-c", *serve_args())
    ready = wait_for_event(driver.log, "supervisor.ready", timeout=90)
    base = f"http://127.0.0.1:{driver.port()}"
    load = Load(f"{base}/pid?s=0.05")
    time.sleep(1.5)
    victim = ready["workers"][0]
    killed_at = time.monotonic()
    assert wine("taskkill", "/F", "/PID", str(victim)).returncode == 0
    exited = wait_for_event(driver.log, "worker.exited", timeout=30)
    assert exited["worker_pid"] == victim and exited["replaced_in_s"] == 0.5
    replaced = wait_for_event(driver.log, "worker.ready", timeout=60, replaced=True)
    time.sleep(1.5)
    answers = load.stop()
    driver.go()
    assert driver.result()["exit"] == 0
    failed = [(round(at - killed_at, 2), said) for at, said in answers
              if not said.startswith("pid")]
    served = [said for _, said in answers if said.startswith("pid")]
    # the connections the killed worker held are lost with it; nothing else is
    assert len(failed) <= 4, failed
    survivor = f"pid {ready['workers'][1]}"
    assert survivor in served
    print(f"killed {victim}: {len(failed)} failed of {len(answers)}; replaced by "
          f"{replaced['worker_pid']}")


def test_c_restart_under_load(tmp_path, started):
    """c."""
    from tests.wine.conftest import WIN_PY, wine

    # the default loop of a Windows worker (asyncio's selector loop, capped): winloop's
    # pre-posted accepts may hold connections that the old worker's listener close resets
    # (docs/deploying/windows.md, which loop for workers)
    driver = Driver(started, tmp_path, "ctrl-c", *serve_args(loop="auto"))
    ready = wait_for_event(driver.log, "supervisor.ready", timeout=90)
    port = driver.port()
    load, keep = Load(f"http://127.0.0.1:{port}/pid?s=0.02"), KeepAlive(port)
    time.sleep(1.0)
    restarted = wine(WIN_PY, "-m", "graceful", "restart", "--pid", str(ready["pid"]),
                     timeout=180)
    time.sleep(1.0)
    answers = load.stop()
    keep.stop()
    driver.go()
    assert driver.result()["exit"] == 0
    assert restarted.returncode == 0, restarted
    done = wait_for_event(driver.log, "restart.done")
    assert done["replaced"] == ready["workers"] and done["pid"] == ready["pid"]
    loops = {e["loop"] for e in events(driver.log, "server.started")}
    assert loops == {"graceful.host.capped_selector"}, loops
    failed = [said for _, said in answers if not said.startswith("pid")]
    assert failed == [] and keep.errors == [], (failed, keep.errors)
    print(f"console restart: {len(answers)} new-connection and {keep.served} keep-alive "
          f"requests, 0 failed; {restarted.stdout.strip()}")


def beats(folder) -> dict[tuple[int, int], float]:
    """The last time each helper wrote, by (its worker's pid, its pid)."""
    found = {}
    for path in folder.glob("*.beat"):
        text = path.read_text()
        if text:  # not caught between its truncation and its write
            worker, helper = path.stem.split("-")
            found[int(worker), int(helper)] = float(text)
    return found


def test_d_helpers_end_with_their_worker_after_its_drain(tmp_path, started, monkeypatch):
    """d."""
    helpers = tmp_path / "helpers"
    helpers.mkdir()
    monkeypatch.setenv("WINE_TEST_HELPERS", winpath(helpers))
    work = tmp_path / "work"
    work.mkdir()
    serve = serve_args()
    serve[0] = "tests.wine.app:with_helper"
    driver = Driver(started, work, "ctrl-c", *serve)
    ready = wait_for_event(driver.log, "supervisor.ready", timeout=90)
    base = f"http://127.0.0.1:{driver.port()}"
    deadline = time.monotonic() + 30
    while len(beats(helpers)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(w for w, _ in beats(helpers)) == sorted(ready["workers"]), beats(helpers)
    requests = Requests([f"{base}/pid?s=6"] * 2)  # a drain of seconds
    time.sleep(1.0)  # in flight
    told = time.time()
    driver.go()
    wait_for_event(driver.log, "drain.progress", timeout=30)
    time.sleep(1.0)
    during = beats(helpers)
    result = driver.result()
    assert result["exit"] == 0, result
    answers = requests.wait()
    assert all(isinstance(a, tuple) and a[0] == 200 for a in answers), answers
    draining = {int(a[2].split()[1]) for a in answers}  # Wine's pick: one worker, or both
    # the helper of a worker still draining is alive
    assert all(at > told + 0.5 for (w, _), at in during.items() if w in draining), (
        told, draining, during)
    time.sleep(1.0)
    after = beats(helpers)
    time.sleep(1.5)
    assert beats(helpers) == after, "a helper outlived its worker"
    assert not [e for e in read_events(driver.log) if e.get("event") == "worker.no_job"]
    left = [e for e in read_events(driver.log) if e.get("event") == "worker.leftovers"]
    # each helper named with its worker (beside it, a console host Windows made for it)
    assert set(after) <= {(e["worker_pid"], p) for e in left for p in e["processes"]}, left


def test_e_workers_with_a_checkpoint_is_refused_as_on_posix(tmp_path):
    """e."""
    from tests.wine.conftest import ROOT, WIN_PY, wine

    args = ["serve", "tests.apps:basic", "--port", "0", "--workers", "2", "--checkpoint"]
    posix = subprocess.run([sys.executable, "-m", "graceful", *args, str(tmp_path / "s.json")],
                           cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
    assert posix.returncode == 2 and len(posix.stderr.splitlines()) == 1, posix
    windows = wine(WIN_PY, "-m", "graceful", *args, winpath(tmp_path / "s.json"))
    assert windows.returncode == 2, windows
    assert windows.stderr.splitlines() == posix.stderr.splitlines(), (windows, posix)
    assert "--workers above 1 with --checkpoint" in windows.stderr
    assert windows.stdout == "" and not (tmp_path / "s.json").exists()


def _answered(conn: socket.socket, timeout: float) -> bool | str:
    conn.settimeout(timeout)
    try:
        return conn.recv(12).startswith(b"HTTP/1.1 200")
    except TimeoutError:
        return False  # still waiting in the accept queue
    except OSError as err:
        return repr(err)


def test_f_more_connections_than_select_takes(tmp_path, started):
    """f."""
    from graceful.host.capped_selector import DEFAULT_CAP

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    driver = Driver(started, tmp_path, "ctrl-c", *serve_args(loop="auto"))
    ready = wait_for_event(driver.log, "supervisor.ready", timeout=90)
    port = driver.port()
    conns = []
    try:
        for _ in range(2 * DEFAULT_CAP + 200):
            conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            conn.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive: held open
            conns.append(conn)
        # the driver sends Ctrl+C by itself 60 s after its start: every wait here is short
        time.sleep(5)  # each worker accepts up to its cap and answers
        first = [_answered(c, 0.01) for c in conns]
        errors = [a for a in first if isinstance(a, str)]
        served = [c for c, a in zip(conns, first, strict=True) if a is True]
        waiting = [c for c, a in zip(conns, first, strict=True) if a is False]
        assert not errors, (len(errors), errors[:3])
        assert waiting and len(served) <= 2 * DEFAULT_CAP, (len(served), len(waiting))
        for conn in served[:100]:
            conn.close()
        time.sleep(5)
        let_in = [_answered(c, 0.01) for c in waiting[:50]]
        assert all(a is True for a in let_in), let_in
    finally:
        for conn in conns:
            conn.close()
    assert not events(driver.log, "worker.exited"), events(driver.log, "worker.exited")
    assert not events(driver.log, "process.crashed")
    driver.go()
    assert driver.result()["exit"] == 0
    print(f"{len(conns)} connections: {len(served)} served at once, {len(waiting)} waited; "
          f"workers {ready['workers']}")


def test_g_a_bad_module_exits_2_with_its_import_error(tmp_path):
    """g."""
    from tests.wine.conftest import WIN_PY, wine

    (tmp_path / "badmod.py").write_text('raise RuntimeError("no such thing here")\n')
    served = wine(WIN_PY, "-m", "graceful", "serve", "badmod:app", "--app-dir",
                  winpath(tmp_path), "--workers", "2", "--port", "0", timeout=120)
    assert served.returncode == 2, served
    said = served.stdout + served.stderr
    assert "importing 'badmod' failed: RuntimeError: no such thing here" in said, served
    assert "Fatal Python error" not in said and "page fault" not in said, served
