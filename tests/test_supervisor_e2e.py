"""The supervisor: one pid for the service's whole life, workers behind it, restarts as a
rolling replacement of workers. Real CLI, real signals, real sockets.

Every process a test starts is ended by its pid: the supervisor by the `serve` fixture,
the workers (each a process group of its own) by the plugin's kill, read from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from graceful.host.processes import alive
from tests.conftest import ROOT
from tests.loadgen import Load, ended, get

TARGET = "tests.deployed:create_app"
CONSOLE_SCRIPT = Path(sys.executable).with_name("graceful")


def restart(pid: int, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONSOLE_SCRIPT), "restart", "--pid", str(pid), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else dict(os.environ))


def worker_pids(server) -> list[int]:
    return server.wait_for("supervisor.ready")["workers"]


async def test_restart_replaces_the_workers_and_keeps_the_pid(serve, release):
    """1. `graceful restart --pid P` under load: exit 0 naming the new workers; every
    request answered (none refused, reset or unanswered); the new release serves; the
    supervisor's pid is the one that was started, and still stops cleanly (exit 0)."""
    server = serve(TARGET, "--workers", "2", env={"RELEASE_FILE": str(release)})
    old = worker_pids(server)
    load = Load(server.port).start()
    await load.answered(20)
    release.write_text("v2\n")
    done = await asyncio.to_thread(restart, server.pid)
    assert done.returncode == 0, done.stderr
    assert f"pid {server.pid} serves" in done.stdout
    outcome = server.wait_for("restart.done")
    assert sorted(outcome["replaced"]) == sorted(old)
    assert not set(outcome["workers"]) & set(old)
    await load.answered(load.outcomes["ok"] + 20)
    outcomes = await load.finish()
    assert set(outcomes) == {"ok"}, (outcomes, load.errors)
    status, body = await get(server.port, "/release")
    assert status == 200 and body.startswith("v2 "), body
    for pid in old:
        assert await ended(pid)
    assert server.running()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(30) == 0


async def test_workers_each_drain_and_the_exit_code_is_the_worst(serve, release):
    """2. --workers 2: two worker processes answer; a SIGTERM with requests in flight
    drains both (every request answered 200) and the service exits 0."""
    server = serve(TARGET, "--workers", "2", env={"RELEASE_FILE": str(release)})
    workers = worker_pids(server)
    assert len(set(workers)) == 2
    requests = [asyncio.create_task(get(server.port, "/slow?s=1.5")) for _ in range(8)]
    await asyncio.sleep(0.5)
    server.signal(signal.SIGTERM)
    answers = await asyncio.gather(*requests)
    assert all(status == 200 for status, _ in answers), answers
    served_by = {int(body.split()[1]) for _, body in answers}
    assert served_by <= set(workers)
    assert await asyncio.to_thread(server.wait_exit, 30) == 0
    assert [e["code"] for e in server.events if e["event"] == "supervisor.exit"] == [0]


async def test_a_killed_worker_is_logged_and_replaced(serve, release):
    """3. A worker SIGKILLed while serving (an OOM kill): `worker.exited` names the signal
    and its last lines, a new worker takes its slot, the port never refuses."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    (victim,) = worker_pids(server)
    load = Load(server.port, clients=6).start()
    await load.answered(10)
    os.kill(victim, signal.SIGKILL)
    exited = await asyncio.to_thread(server.wait_for, "worker.exited", 15)
    assert exited["worker_pid"] == victim and exited["signal"] == "SIGKILL"
    assert exited["last_lines"], exited
    replaced = await asyncio.to_thread(server.wait_for, "worker.ready", 30, replaced=True)
    assert replaced["worker_pid"] != victim
    await load.answered(load.outcomes["ok"] + 10, timeout=20)
    outcomes = await load.finish()
    # in flight on the killed worker: cut (what any server does to a SIGKILLed process);
    # nothing is refused: the socket is the supervisor's
    assert outcomes["refused"] == 0, (outcomes, load.errors)
    assert server.running()


async def test_a_new_worker_that_dies_after_ready_fails_the_restart(serve, release, tmp_path):
    """4. New code that serves and then dies (SIGKILL 0.5 s after ready): `graceful restart`
    exits 1 saying so, and the dead worker is replaced: the port keeps answering."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    worker_pids(server)
    release.write_text("dies\n")
    killer_done = threading.Event()

    def kill_new_worker() -> None:
        started = server.wait_for("worker.ready", 30, generation=1)
        time.sleep(0.5)
        with contextlib.suppress(ProcessLookupError):
            os.kill(started["worker_pid"], signal.SIGKILL)
        killer_done.set()

    killer = threading.Thread(target=kill_new_worker, daemon=True)
    killer.start()
    done = await asyncio.to_thread(restart, server.pid)
    assert killer_done.is_set()
    assert done.returncode == 1, done.stdout
    assert "exited within" in done.stderr and "SIGKILL" in done.stderr
    await asyncio.to_thread(server.wait_for, "worker.ready", 30, replaced=True)
    assert (await get(server.port, "/release"))[0] == 200


async def test_a_restart_whose_workers_fail_leaves_the_old_ones_serving(serve, release):
    """5. New code that fails at import: exit 1 with the reason and the worker's last lines;
    the old worker serves on, unchanged."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    (old,) = worker_pids(server)
    release.write_text("import-error\n")
    done = await asyncio.to_thread(restart, server.pid)
    assert done.returncode == 1
    assert "exited before it was ready" in done.stderr
    failed = server.wait_for("restart.failed")
    assert any("cannot import name 'Settings'" in line for line in failed["last_lines"])
    assert await get(server.port, "/release") == (200, f"v1 {old}\n")


async def test_restarts_asked_during_a_restart_are_queued_each_with_its_outcome(
        serve, release):
    """6. Two `graceful restart`s, the code changed between them: both exit 0 with their
    own outcome (different workers), and the code on disk at the last request serves."""
    release.write_text("slow\n")  # each start takes a second: the second request waits
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    worker_pids(server)
    first = asyncio.create_task(asyncio.to_thread(restart, server.pid))
    await asyncio.to_thread(server.wait_for, "restart.requested")
    release.write_text("slow-v3\n")
    second = asyncio.create_task(asyncio.to_thread(restart, server.pid))
    one, two = await asyncio.gather(first, second)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr, two.stderr)
    assert one.stdout != two.stdout
    done = [e for e in server.events if e["event"] == "restart.done"]
    assert len(done) == 2 and done[0]["workers"] == done[1]["replaced"]
    status, body = await get(server.port, "/release")
    assert status == 200 and body.startswith("slow-v3 ")


async def test_restart_refuses_a_pid_that_is_not_a_graceful_supervisor(tmp_path):
    """7. A stale pid file naming an unrelated process: exit 2 saying so, and that process
    is not signalled (it is still running)."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(f"{other.pid}\n")
        done = await asyncio.to_thread(
            lambda: subprocess.run([str(CONSOLE_SCRIPT), "restart", "--pid-file", str(pid_file)],
                                   capture_output=True, text=True, timeout=30))
        assert done.returncode == 2
        assert "no graceful serve supervisor answers" in done.stderr and "stale" in done.stderr
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


async def test_restart_works_from_another_environment(serve, release, tmp_path):
    """8. `graceful restart` run with another XDG_RUNTIME_DIR and HOME (a login shell, sudo):
    it reaches the supervisor and reports the outcome."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    worker_pids(server)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path)}
    done = await asyncio.to_thread(restart, server.pid, env=env)
    assert done.returncode == 0, done.stderr


async def test_the_pid_file_never_vanishes_across_restarts(serve, release, tmp_path):
    """9. With --pid-file and --checkpoint, a reader polling the pid file during three
    restarts always finds the supervisor's pid."""
    pid_file = tmp_path / "app.pid"
    server = serve(TARGET, "--pid-file", str(pid_file), "--checkpoint",
                   str(tmp_path / "state.ckpt"), env={"RELEASE_FILE": str(release)})
    worker_pids(server)
    seen: set[str] = set()
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                seen.add(pid_file.read_text().strip())
            except OSError as err:
                seen.add(f"missing: {err}")

    reader = threading.Thread(target=poll, daemon=True)
    reader.start()
    try:
        for _ in range(3):
            done = await asyncio.to_thread(restart, server.pid)
            assert done.returncode == 0, done.stderr
    finally:
        stop.set()
        reader.join(5)
    assert seen == {str(server.pid)}


async def test_the_checkpoint_is_exact_across_a_restart(serve, release, tmp_path):
    """10. A counter in the checkpointed state, counted by clients during a restart: the
    final state equals the answered updates (none lost, none applied twice)."""
    state = tmp_path / "state.ckpt"
    server = serve(TARGET, "--checkpoint", str(state), env={"RELEASE_FILE": str(release)})
    worker_pids(server)
    answered = 0
    stop = asyncio.Event()

    async def client() -> None:
        nonlocal answered
        while not stop.is_set():
            status, _ = await get(server.port, "/count?s=0.02")
            assert status == 200
            answered += 1

    clients = [asyncio.create_task(client()) for _ in range(4)]
    await asyncio.sleep(0.5)
    done = await asyncio.to_thread(restart, server.pid)
    assert done.returncode == 0, done.stderr
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*clients)
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 30) == 0
    shown = subprocess.run([str(CONSOLE_SCRIPT), "checkpoint", "show", str(state)],
                           capture_output=True, text=True, timeout=30)
    assert f'"count": {answered}' in shown.stdout, (answered, shown.stdout)


async def test_workers_with_a_checkpoint_are_refused(tmp_path):
    """11. --workers 2 with --checkpoint: one line naming both, exit 2."""
    done = await asyncio.to_thread(lambda: subprocess.run(
        [str(CONSOLE_SCRIPT), "serve", TARGET, "--workers", "2", "--checkpoint",
         str(tmp_path / "s.ckpt")], capture_output=True, text=True, timeout=30, cwd=ROOT))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--workers" in done.stderr \
        and "--checkpoint" in done.stderr, done.stderr


async def test_ctrl_c_to_the_terminal_group_drains_once(tmp_path, release):
    """12. Ctrl+C in a terminal sends SIGINT to the whole foreground process group: only
    the supervisor is in it (workers have groups of their own), so the drain is a graceful
    one, not escalated by a second request: a request in flight is answered, exit 0."""
    proc = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "serve", TARGET, "--port", "0", "--log-format", "json"],
        cwd=ROOT, env={**os.environ, "RELEASE_FILE": str(release)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    from graceful.testing.process import SubprocessServer

    server = SubprocessServer.following(proc)
    try:
        port = server.wait_for("server.started")["port"]
        server.wait_for("supervisor.ready")
        request = asyncio.create_task(get(port, "/slow?s=1.5"))
        await asyncio.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
        status, _ = await request
        assert status == 200
        assert await asyncio.to_thread(proc.wait, 30) == 0
        modes = [e["mode"] for e in server.events if e["event"] == "stop.requested"]
        assert modes == ["graceful"], modes
    finally:
        server.kill()


async def test_a_killed_supervisor_takes_its_workers_with_it(serve, release):
    """13. The supervisor SIGKILLed (an OOM kill of the main process): its workers get
    SIGTERM from the kernel, drain and exit; nothing serves on unsupervised."""
    server = serve(TARGET, "--workers", "2", env={"RELEASE_FILE": str(release)})
    workers = worker_pids(server)
    os.kill(server.pid, signal.SIGKILL)
    for pid in workers:
        assert await ended(pid, 30)


async def test_restart_timeout_zero_is_refused():
    """14. --restart-timeout 0 would fail every restart: refused at start, exit 2."""
    done = await asyncio.to_thread(lambda: subprocess.run(
        [str(CONSOLE_SCRIPT), "serve", TARGET, "--restart-timeout", "0"],
        capture_output=True, text=True, timeout=30, cwd=ROOT))
    assert done.returncode == 2 and "--restart-timeout" in done.stderr, done.stderr


async def test_the_lock_file_names_the_supervisor_after_a_failed_restart(
        serve, release, tmp_path):
    """15. With --checkpoint, PATH.lock names the supervisor (the holder of the lock for the
    service's life), also after a restart whose new worker failed."""
    state = tmp_path / "state.ckpt"
    server = serve(TARGET, "--checkpoint", str(state), env={"RELEASE_FILE": str(release)})
    worker_pids(server)
    release.write_text("startup-error\n")
    done = await asyncio.to_thread(restart, server.pid)
    assert done.returncode == 1
    assert (tmp_path / "state.ckpt.lock").read_text().split()[0] == str(server.pid)


async def test_a_restart_asked_while_stopping_is_refused_at_once(serve, release):
    """16. `graceful restart` while the service drains: exit 1 at once saying it is
    stopping (not after its timeout)."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    worker_pids(server)
    request = asyncio.create_task(get(server.port, "/slow?s=3"))
    await asyncio.sleep(0.3)
    server.signal(signal.SIGTERM)
    await asyncio.to_thread(server.wait_for, "supervisor.stopping")
    started = time.monotonic()
    done = await asyncio.to_thread(restart, server.pid, "--timeout", "60")
    assert done.returncode in (1, 2), done.stderr
    assert time.monotonic() - started < 10
    assert (await request)[0] == 200


async def test_helpers_the_app_starts_keep_logging_and_end_with_their_worker(serve, tmp_path):
    """17. A helper process started in on_startup writes to its worker's stderr. Through a
    restart the new worker's helper keeps logging (nothing dies of SIGPIPE when the old
    worker exits, and no helper holds the restart open); the old worker's helper, never
    stopped by the app, is ended with its worker (`worker.leftovers`) instead of piling up
    one per restart."""
    server = serve("tests.operator_app:create_app", env={"START_HELPER": "1"})
    worker_pids(server)
    old_helper = int((await get(server.port, "/helper"))[1])
    started = time.monotonic()
    done = await asyncio.to_thread(restart, server.pid)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 15
    new_helper = int((await get(server.port, "/helper"))[1])
    assert new_helper != old_helper
    await asyncio.to_thread(server.wait_for, "worker.leftovers", 15)
    assert await ended(old_helper, 10)
    lines = len(server.raw)
    await asyncio.sleep(1.0)
    assert alive(new_helper)
    assert len([line for line in server.raw[lines:] if "helper line" in line]) > 5
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit, 30) == 0
    assert await ended(new_helper, 10)


async def test_new_workers_get_the_supervisors_environment_not_the_apps(serve, tmp_path):
    """18. New workers start from the supervisor's environment: what the app changed in
    os.environ does not reach them, and a `.env` edited by a deploy is read again."""
    (tmp_path / "app.py").write_text((ROOT / "tests" / "operator_app.py").read_text())
    (tmp_path / ".env").write_text("DEPLOYED=one\n")
    proc = subprocess.Popen([str(CONSOLE_SCRIPT), "serve", "app:create_app", "--port", "0",
                             "--log-format", "json"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    from graceful.testing.process import SubprocessServer

    server = SubprocessServer.following(proc)
    try:
        port = server.wait_for("server.started")["port"]
        server.wait_for("supervisor.ready")
        assert (await get(port, "/env"))[1] == "one x\n"
        (tmp_path / ".env").write_text("DEPLOYED=two\n")
        done = await asyncio.to_thread(restart, proc.pid)
        assert done.returncode == 0, done.stderr
        assert (await get(port, "/env"))[1] == "two x\n"
    finally:
        server.kill()


async def test_reload_restarts_on_a_python_save_only(tmp_path):
    """19. --reload: a log or data file written in the app's folder restarts nothing; a
    saved .py file restarts the workers, and a save during that restart is served too."""
    pytest.importorskip("watchfiles")
    (tmp_path / "app.py").write_text(VERSIONED.format(version="one"))
    proc = subprocess.Popen([str(CONSOLE_SCRIPT), "serve", "app:create_app", "--port", "0",
                             "--log-format", "json", "--reload"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    from graceful.testing.process import SubprocessServer

    server = SubprocessServer.following(proc)
    try:
        port = server.wait_for("server.started")["port"]
        server.wait_for("reload.watching")
        (tmp_path / "app.log").write_text("a line\n" * 100)
        (tmp_path / "state.json").write_text("{}")
        await asyncio.sleep(1.5)
        assert "restart.requested" not in server.names()
        (tmp_path / "app.py").write_text(VERSIONED.format(version="two"))
        await asyncio.to_thread(server.wait_for, "restart.requested", 15)
        (tmp_path / "app.py").write_text(VERSIONED.format(version="three"))
        deadline = time.monotonic() + 30
        while (await get(port, "/version"))[1] != "three":
            assert time.monotonic() < deadline, server.names()
            await asyncio.sleep(0.2)
    finally:
        server.kill()


VERSIONED = '''from aiohttp import web


async def version(request):
    return web.Response(text="{version}")


def create_app():
    app = web.Application()
    app.router.add_get("/version", version)
    return app
'''


async def test_a_restart_skips_the_pre_stop_delay_and_readiness_stays_up(serve, release):
    """20. --pre-stop-delay is for a stop (load balancers deregister the server); at a
    restart the new workers serve the same sockets already: readiness probes on new
    connections through the restart all answer 200, and the restart does not wait out the
    delay."""
    server = serve(TARGET, "--pre-stop-delay", "5", env={"RELEASE_FILE": str(release)})
    worker_pids(server)
    statuses: list[int] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            statuses.append((await get(server.port, "/readyz"))[0])
            await asyncio.sleep(0.005)

    prober = asyncio.create_task(probe())
    done = await asyncio.to_thread(restart, server.pid)
    stop.set()
    await prober
    assert done.returncode == 0, done.stderr
    server.wait_for("restart.done")
    # the old worker's pre-stop phase had no budget (a stop's would be 5 s); what the
    # restart took otherwise depends on this machine's load
    assert server.wait_for("phase.finished", phase="pre_stop")["budget_s"] == 0
    assert len(statuses) > 20 and set(statuses) == {200}, statuses


async def test_an_fd_given_to_the_supervisor_reaches_a_worker_only_as_a_listener(tmp_path):
    """21. `--fd N`: the worker serves the socket, and the supervisor's inherited copy
    (descriptor N) does not reach it: a restart's worker has the socket on descriptor 3
    (announced as systemd does) and N is not it; the first worker (given the socket on its
    setup socket) holds as many copies of it as that one."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    inode = os.fstat(listener.fileno()).st_ino
    (tmp_path / "app.py").write_text(FDS_APP)
    # a number no copy of the worker's own takes by chance (it takes the lowest free ones)
    given = os.dup2(listener.fileno(), 250)
    proc = subprocess.Popen([str(CONSOLE_SCRIPT), "serve", "app:create_app", "--fd",
                             str(given), "--log-format", "json"], cwd=tmp_path,
                            pass_fds=[given], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    os.close(given)
    listener.close()
    from graceful.testing.process import SubprocessServer

    server = SubprocessServer.following(proc)
    copies = []
    try:
        server.wait_for("supervisor.ready")
        for _ in range(2):
            links = dict(line.split(" ", 1) for line in (await get(port, "/fds"))[1].split("\n"))
            copies.append([fd for fd, link in links.items() if link == f"socket:[{inode}]"])
            done = await asyncio.to_thread(restart, proc.pid)
            assert done.returncode == 0, done.stderr
    finally:
        server.kill()
    first, restarted = copies
    assert "3" in restarted and str(given) not in restarted, (given, restarted)
    assert len(first) == len(restarted), (first, restarted)


async def test_a_final_flush_that_fails_during_a_restart_fails_it(serve, small_disk):
    """22. The old worker's final flush fails (its disk is full): `graceful restart` exits
    1 naming the old worker's exit code 4, not "restarted"."""
    server = serve("tests.apps:basic", "--checkpoint", str(small_disk / "s.json"))
    worker_pids(server)
    for _ in range(50):
        await get(server.port, "/count")
    with contextlib.suppress(OSError), (small_disk / "filler").open("wb") as full:
        while True:
            full.write(b"x" * 512)
            full.flush()
    done = await asyncio.to_thread(restart, server.pid)
    assert done.returncode == 1, done.stdout
    assert "exit code 4" in done.stderr, done.stderr
    server.kill()


FDS_APP = '''import os

from aiohttp import web


async def fds(request):
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(f"{fd} {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            pass
    return web.Response(text="\\n".join(links))


def create_app():
    app = web.Application()
    app.router.add_get("/fds", fds)
    return app
'''


async def test_a_restart_while_paused_is_refused(serve, release):
    """23. SIGUSR1 (pause), then `graceful restart`: exit 1 saying the service is paused,
    the old worker stays paused (no new worker accepts); after SIGUSR2 a restart works."""
    server = serve(TARGET, env={"RELEASE_FILE": str(release)})
    (old,) = worker_pids(server)
    server.signal(signal.SIGUSR1)
    await asyncio.to_thread(server.wait_for, "pause.done", 15)
    done = await asyncio.to_thread(restart, server.pid)
    assert done.returncode == 1 and "paused" in done.stderr, done.stderr
    assert "worker.started" not in server.names()
    server.signal(signal.SIGUSR2)
    await asyncio.to_thread(server.wait_for, "resume.done", 15)
    done = await asyncio.to_thread(restart, server.pid)
    assert done.returncode == 0, done.stderr
    assert await ended(old)


async def test_a_stop_during_the_hand_over_of_the_state_resets_nothing(serve, release,
                                                                       tmp_path):
    """24. With --checkpoint, SIGTERM while the new worker waits for the old one's final
    flush (connections queue in the kernel meanwhile): the hand-over completes, the new
    worker serves what queued and then stops; clients see answers or refusals, never a
    reset; the request in flight on the old worker is answered; exit 0."""
    server = serve(TARGET, "--checkpoint", str(tmp_path / "s.ckpt"),
                   env={"RELEASE_FILE": str(release)})
    worker_pids(server)
    # longer than a new worker's start on a loaded machine: still in flight when the new
    # worker is ready, so the hand-over waits for it
    held = asyncio.create_task(get(server.port, "/slow?s=5"))
    load = Load(server.port, clients=8).start()
    await load.answered(10)
    server.signal(signal.SIGHUP)
    await asyncio.to_thread(server.wait_for, "worker.ready", 30, generation=1)
    await asyncio.sleep(0.3)  # connections queue behind the hand-over
    server.signal(signal.SIGTERM)
    assert (await held)[0] == 200
    assert await asyncio.to_thread(server.wait_exit, 30) == 0
    outcomes = await load.finish()
    assert outcomes["reset"] == 0 and outcomes["cut"] == 0, (outcomes, load.errors[:5])
    assert "restart.completing" in server.names()


async def test_a_restart_during_a_replacements_backoff_leaves_no_worker_behind(serve, release):
    """25. A worker killed three times (its replacement now waits 2 s), then a restart
    with new code: when that backoff has passed, the supervisor has exactly the restart's
    workers, and every answer is the new code's."""
    from graceful.testing.process import _children

    server = serve(TARGET, "--workers", "2", env={"RELEASE_FILE": str(release)})
    victim = worker_pids(server)[0]
    for death in range(1, 4):
        os.kill(victim, signal.SIGKILL)
        await asyncio.to_thread(server.wait_for, "worker.exited", 15, worker_pid=victim)
        if death < 3:
            victim = await _replacement(server, death)
    release.write_text("v2\n")
    done = await asyncio.to_thread(restart, server.pid)
    assert done.returncode == 0, done.stderr
    new = set(server.wait_for("restart.done")["workers"])
    await asyncio.sleep(2.5)  # past the cancelled replacement's backoff
    assert set(_children(server.pid)) == new
    bodies = {(await get(server.port, "/release"))[1].split()[0] for _ in range(20)}
    assert bodies == {"v2"}


async def _replacement(server, nth: int) -> int:
    """The pid of the nth replacement that became ready."""
    deadline = time.monotonic() + 30
    while True:
        ready = [e for e in server.events if e["event"] == "worker.ready" and e.get("replaced")]
        if len(ready) >= nth:
            return ready[nth - 1]["worker_pid"]
        assert time.monotonic() < deadline, server.names()
        await asyncio.sleep(0.05)
