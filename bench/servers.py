"""The servers under test, how to start each with the bench app, and their processes.

Every server listens on 127.0.0.1 only. Each is started in a session of its own, so that
when it is done (or must be killed) the harness ends exactly the processes it started:
the stop signal goes to the server's own pid, as an orchestrator sends it; a final
SIGKILL goes to the process group whose id is that pid (gunicorn's and granian's workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.apps import SEEN_ENV

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(sys.executable).parent
WINDOWS = sys.platform == "win32"


def _new_group() -> dict[str, object]:
    """POSIX: a session of its own. Windows: a process group of its own, which is what
    lets the harness send it CTRL_BREAK_EVENT with ``os.kill(pid, CTRL_BREAK_EVENT)``."""
    if WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined]
    return {"start_new_session": True}


@dataclasses.dataclass(frozen=True)
class Launch:
    port: int
    drain_timeout_s: float  # graceful always gets it; peers only with peer_defaults=False
    peer_defaults: bool = False
    pre_stop_s: float = 0.0
    loop: str = "asyncio"  # for graceful and aiohttp's run_app (throughput mode)
    tls: tuple[str, str] | None = None  # (certfile, keyfile): graceful and run_app serve HTTPS
    graceful_args: tuple[str, ...] = ()  # more graceful serve options (--access-log)
    graceful_app: str = "bench.apps:aiohttp_app"


@dataclasses.dataclass(frozen=True)
class Server:
    name: str
    argv: Callable[[Launch], list[str]]
    port_from_log: bool = False  # graceful: --port 0, read server.started
    pre_stop: bool = False  # takes the scenario's pre-stop delay
    default_timeout: str = ""  # what the server does with no timeout option
    workers: int = 1  # worker processes (graceful: behind its supervisor)


def _opt(launch: Launch, *flag: str) -> list[str]:
    return [] if launch.peer_defaults else list(flag)


def _graceful(loop: str, *extra: str) -> Callable[[Launch], list[str]]:
    def argv(ln: Launch) -> list[str]:
        cmd = [PY, "-m", "graceful", "serve", ln.graceful_app, "--host", "127.0.0.1",
               "--port", "0", "--log-format", "json", "--drain-timeout",
               f"{ln.drain_timeout_s:g}", "--loop", loop or ln.loop, *extra, *ln.graceful_args]
        if ln.tls:
            cmd += ["--ssl-certfile", ln.tls[0], "--ssl-keyfile", ln.tls[1]]
        return [*cmd, "--pre-stop-delay", f"{ln.pre_stop_s:g}"] if ln.pre_stop_s else cmd
    return argv


def _library(ln: Launch) -> list[str]:
    return [PY, "-m", "bench.launch_library", "--port", str(ln.port), "--loop", ln.loop]


def _aiohttp(ln: Launch) -> list[str]:
    return [PY, "-m", "bench.launch_aiohttp", "--port", str(ln.port), "--loop", ln.loop,
            *(["--ssl-cert", ln.tls[0], "--ssl-key", ln.tls[1]] if ln.tls else []),
            *_opt(ln, "--shutdown-timeout", f"{ln.drain_timeout_s:g}")]


def _uvicorn(*extra: str) -> Callable[[Launch], list[str]]:
    def argv(ln: Launch) -> list[str]:
        return [PY, "-m", "uvicorn", "bench.apps:asgi", "--host", "127.0.0.1", "--port",
                str(ln.port), "--no-access-log", "--log-level", "warning", *extra,
                *_opt(ln, "--timeout-graceful-shutdown",
                      str(max(1, round(ln.drain_timeout_s))))]
    return argv


def _hypercorn(workers: int = 1) -> Callable[[Launch], list[str]]:
    def argv(ln: Launch) -> list[str]:
        return [PY, "-m", "hypercorn", "bench.apps:asgi", "-b", f"127.0.0.1:{ln.port}",
                *(["--workers", str(workers)] if workers != 1 else []),
                *_opt(ln, "--graceful-timeout", f"{ln.drain_timeout_s:g}")]
    return argv


def _granian(workers: int = 1) -> Callable[[Launch], list[str]]:
    def argv(ln: Launch) -> list[str]:
        return [str(BIN / "granian"), "--interface", "asgi", "--host", "127.0.0.1", "--port",
                str(ln.port), "--workers", str(workers), "--no-ws", "--log-level", "warning",
                *_opt(ln, "--workers-kill-timeout", str(max(1, round(ln.drain_timeout_s)))),
                "bench.apps:asgi"]
    return argv


def _gunicorn(worker: str, app: str, workers: int = 1) -> Callable[[Launch], list[str]]:
    def argv(ln: Launch) -> list[str]:
        return [PY, "-m", "gunicorn", "-k", worker, "-w", str(workers), "-b",
                f"127.0.0.1:{ln.port}", "--log-level", "warning",
                *_opt(ln, "--graceful-timeout", str(max(1, round(ln.drain_timeout_s)))), app]
    return argv


GUNICORN_AIOHTTP = ("aiohttp.GunicornWebWorker", "bench.apps:aiohttp_app_async")
GUNICORN_UVICORN = ("uvicorn.workers.UvicornWorker", "bench.apps:asgi")

# How each restarts in the restart scenarios (bench/restart.py), each the way it documents,
# all of them by SIGHUP to the pid the harness started:
#   graceful       its supervisor (the pid stays) starts new workers, waits until they are
#                  ready, then the old ones drain; the listeners never close (README, Restart)
#   gunicorn       HUP (both workers): "reload the configuration, start the new worker
#                  processes with a new configuration and gracefully shutdown older workers"
#                  (its Signal Handling page): new workers first, the arbiter's pid stays
#   uvicorn -w 2   its multiprocess supervisor's SIGHUP: each worker in turn, the new one
#                  started and waited for (--timeout-worker-healthcheck) before the old one is
#                  terminated; the parent's pid stays
#   granian        SIGHUP ("gracefully respawning workers", in its log): each worker in turn,
#                  a new one started, then after --respawn-interval (3.5 s, not its readiness)
#                  the old one stopped: 2 workers take 7 s or more (use a --window that long)
#   hypercorn      SIGHUP stops every worker and waits for them to exit, then starts new ones
#                  (its run.py): it cannot restart without a stop; the parent keeps the
#                  listening socket, so new connections wait in its backlog meanwhile
#   uvicorn        (one process, no --workers) has no restart: SIGHUP ends it
SERVERS: dict[str, Server] = {s.name: s for s in (
    Server("graceful", _graceful(""), port_from_log=True, pre_stop=True),
    Server("graceful-uvloop", _graceful("uvloop"), port_from_log=True,
           pre_stop=True),
    Server("graceful-workers2", _graceful("", "--workers", "2"), port_from_log=True,
           pre_stop=True, workers=2),
    Server("graceful-uvloop-workers2", _graceful("uvloop", "--workers", "2"),
           port_from_log=True, pre_stop=True, workers=2),
    Server("aiohttp", _aiohttp, default_timeout="shutdown_timeout=60 s"),
    # graceful.run in-process (the library): startup only, what the runtime costs a start
    Server("graceful-library", _library),
    Server("uvicorn", _uvicorn(), default_timeout="no limit"),
    # the multi-process uvicorn: its SIGHUP is a rolling restart of the workers (0.51)
    Server("uvicorn-workers2", _uvicorn("--workers", "2"), default_timeout="no limit",
           workers=2),
    Server("hypercorn", _hypercorn(), default_timeout="graceful_timeout=3 s"),
    Server("hypercorn-workers2", _hypercorn(2), default_timeout="graceful_timeout=3 s",
           workers=2),
    Server("granian", _granian(), default_timeout="no limit"),
    Server("granian-workers2", _granian(2), default_timeout="no limit", workers=2),
    Server("gunicorn-aiohttp", _gunicorn(*GUNICORN_AIOHTTP),
           default_timeout="graceful_timeout=30 s"),
    Server("gunicorn-aiohttp-w2", _gunicorn(*GUNICORN_AIOHTTP, workers=2),
           default_timeout="graceful_timeout=30 s", workers=2),
    Server("gunicorn-uvicorn", _gunicorn(*GUNICORN_UVICORN),
           default_timeout="graceful_timeout=30 s"),
    Server("gunicorn-uvicorn-w2", _gunicorn(*GUNICORN_UVICORN, workers=2),
           default_timeout="graceful_timeout=30 s", workers=2),
)}
# What `bench drain` runs when --servers is not given: the restart scenarios (each server's
# own SIGHUP: one worker and two) and the others (the one-process servers).
RESTART_SERVERS = ("graceful-uvloop", "graceful-uvloop-workers2", "uvicorn-workers2",
                   "gunicorn-uvicorn", "gunicorn-uvicorn-w2", "gunicorn-aiohttp",
                   "gunicorn-aiohttp-w2", "uvicorn", "granian", "granian-workers2",
                   "hypercorn", "hypercorn-workers2")
DRAIN_SERVERS = tuple(name for name, s in SERVERS.items() if s.workers == 1)
# Throughput mode (`--variant workers`): graceful with --workers 1 and 2 against the same
# peers, each with 1 and 2 workers.
# aiohttp's run_app (one process, uvloop) is the reference for what graceful's worker adds.
WORKER_SERVERS = ("graceful-uvloop", "graceful-uvloop-workers2", "aiohttp", "uvicorn",
                  "uvicorn-workers2", "gunicorn-uvicorn", "gunicorn-uvicorn-w2",
                  "gunicorn-aiohttp", "gunicorn-aiohttp-w2", "granian", "granian-workers2",
                  "hypercorn", "hypercorn-workers2")
# Throughput mode compares graceful with the same app under aiohttp's run_app.
THROUGHPUT_PAIR = ("graceful", "aiohttp")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (Linux: from /proc; elsewhere ``[pid]``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


class StartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclasses.dataclass
class Proc:
    server: Server
    process: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    async def kill_group(self) -> None:
        """SIGKILL the session the server leads (itself and any workers), and its
        descendants in process groups of their own (graceful's workers: its supervisor
        gives each one), then reap it."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if WINDOWS:
                self.process.kill()
            else:
                stragglers = [pid for pid in descendants(self.pid) if pid != self.pid]
                os.killpg(self.pid, signal.SIGKILL)
                for pid in stragglers:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(self.process.wait(), 10)


async def start(server: Server, launch: Launch, log: Path, seen_log: Path | None,
                ready_timeout_s: float = 30.0) -> Proc:
    """Start ``server`` and return once it answers HTTP on its port."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.pop(SEEN_ENV, None)
    if seen_log is not None:
        env[SEEN_ENV] = str(seen_log)
    port = 0 if server.port_from_log else free_port()
    launch = dataclasses.replace(launch, port=port)
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *server.argv(launch), stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            cwd=ROOT, env=env, **_new_group())
    proc = Proc(server, process, port, log)
    try:
        await _wait_ready(proc, ready_timeout_s, client_tls() if launch.tls else None)
    except BaseException:
        await proc.kill_group()
        raise
    return proc


def client_tls() -> ssl.SSLContext:
    """The bench client's TLS: encrypted like any client, the certificate not checked."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


async def _wait_ready(proc: Proc, timeout_s: float, tls: ssl.SSLContext | None = None
                      ) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.process.returncode is not None:
            raise StartError(f"{proc.server.name} exited {proc.process.returncode}: "
                             f"{_tail(proc.log)}")
        if proc.port == 0:
            proc.port = _port_from_log(proc.log)
        if proc.port and await answers(proc.port, tls):
            return
        await asyncio.sleep(0.02)
    raise StartError(f"{proc.server.name} not ready after {timeout_s:g} s: {_tail(proc.log)}")


def _port_from_log(log: Path) -> int:
    for line in log.read_text(errors="replace").splitlines():
        if '"server.started"' in line:
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("event") == "server.started":
                    return int(record["port"])
    return 0


async def answers(port: int, tls: ssl.SSLContext | None = None) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    except OSError:
        return False
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        line = await asyncio.wait_for(reader.readline(), 2)
        return line.startswith(b"HTTP/1.1 200")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


def _tail(log: Path, lines: int = 8) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
