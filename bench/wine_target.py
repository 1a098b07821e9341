"""What `bench wine-reload` reloads under Wine: graceful with workers as a Windows service
(`graceful service reload`, SCM control 129) or on a console (`graceful restart --pid`,
the supervisor's named pipe). Both run Windows CPython from the prefix of
scripts/wine-env.sh (GRACEFUL_WINE_ROOT), importing graceful and bench from this checkout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from bench.apps import SEEN_ENV
from bench.servers import ROOT

WIN_PY = r"C:\Python312\python.exe"
APP = "bench.wine_reload_app:app"
SERVICE = "GracefulBenchReload"
# QueryServiceStatusEx's process id: Wine's `sc` has no queryex
SCM_PID = ("import sys, win32service as s; m = s.OpenSCManager(None, None, 1); "
           "h = s.OpenService(m, sys.argv[1], 4); "
           "print(s.QueryServiceStatusEx(h)['ProcessId'])")


def wine_env() -> dict[str, str]:
    """scripts/wine-env.sh's variables, for the prefix GRACEFUL_WINE_ROOT names."""
    root = Path(os.environ.get("GRACEFUL_WINE_ROOT")
                or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                / "graceful-wine")
    return {**os.environ, "WINEPREFIX": str(root / "prefix"), "WINEARCH": "win64",
            "WINEDEBUG": "-all", "WINEDLLOVERRIDES": "mscoree,mshtml="}


def winpath(path: Path | str) -> str:
    return "Z:" + str(path).replace("/", "\\")


def prepare(env: dict[str, str]) -> None:
    """Point the prefix's python at this checkout (as scripts/test-wine does) and start a
    persistent wineserver (else it exits, with the service, after its last client)."""
    prefix = Path(env["WINEPREFIX"])
    if not (prefix / "drive_c/Python312/python.exe").exists():
        raise SystemExit(f"no Windows python in {prefix}: run scripts/wine-setup.sh with "
                         "GRACEFUL_WINE_ROOT set")
    (prefix / "drive_c/Python312/Lib/site-packages/graceful-src.pth").write_text(
        winpath(ROOT) + "\r\n")
    import subprocess

    for command in (["wineserver", "-p"], ["wineboot"]):
        subprocess.run(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)


async def wine(env: dict[str, str], *args: str, timeout: float = 300) -> tuple[int, str]:
    """Run a Windows program to its end: exit code and output (stdout + stderr)."""
    proc = await asyncio.create_subprocess_exec(
        "wine", *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return -1, f"timed out after {timeout:g}s"
    return proc.returncode or 0, out.decode(errors="replace").replace("\r", "")


def events(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    found = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict):
                found.append(event)
    return found


async def wait_event(log: Path, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in events(log):
            if event.get("event") == name:
                return event
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no {name} in {log} within {timeout:g}s")


def serve_args(loop: str, latency_drain_s: float = 20.0) -> list[str]:
    return [APP, "--workers", "2", "--port", "0", "--loop", loop, "--log-format", "json",
            "--drain-timeout", f"{latency_drain_s:g}", "--restart-timeout", "120"]


class Service:
    """graceful installed as a service with 2 workers; reloaded with `service reload`."""

    kind = "service"

    def __init__(self, env: dict[str, str], work: Path, loop: str) -> None:
        self.env, self.loop = env, loop
        self.log, self.seen = work / "service.log", work / "seen"
        self.port = self.pid = 0

    async def graceful(self, *args: str, timeout: float = 300) -> tuple[int, str]:
        return await wine(self.env, WIN_PY, "-m", "graceful", *args, timeout=timeout)

    async def start(self) -> None:
        await self.graceful("service", "remove", "--stop", SERVICE, "--timeout", "60")
        code, said = await self.graceful(
            "service", "install", SERVICE, "--startup", "manual", "--log-file",
            winpath(self.log), "--app-dir", winpath(ROOT),
            "--env", f"{SEEN_ENV}={winpath(self.seen)}", "--", *serve_args(self.loop))
        if code != 0:
            raise RuntimeError(f"install failed: {said}")
        code, said = await wine(self.env, "net", "start", SERVICE)
        if code != 0:
            raise RuntimeError(f"net start failed: {said}")
        ready = await wait_event(self.log, "supervisor.ready", 180)
        self.port = int((await wait_event(self.log, "server.started", 30))["port"])
        self.pid = int(ready["pid"])

    async def reload(self) -> tuple[int, str]:
        return await self.graceful("service", "reload", SERVICE, "--timeout", "240")

    async def os_pid(self) -> int | None:
        """The process id the SCM has for the service now."""
        code, said = await wine(self.env, WIN_PY, "-c", SCM_PID, SERVICE, timeout=60)
        return int(said.split()[-1]) if code == 0 and said.split() else None

    async def stop(self) -> int:
        code, _ = await self.graceful("service", "remove", "--stop", SERVICE, "--timeout", "90")
        if code not in (0, 3):
            await wine(self.env, "sc", "delete", SERVICE)
        return code


class Console:
    """`graceful serve --workers 2` from a Linux shell (no console window: its workers have
    none either); reloaded with `graceful restart --pid`, ended by its pid at the end."""

    kind = "console"

    def __init__(self, env: dict[str, str], work: Path, loop: str) -> None:
        self.env, self.loop = env, loop
        self.log, self.seen = work / "console.log", work / "seen"
        self.port = self.pid = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._relay: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = {**self.env, SEEN_ENV: winpath(self.seen), "WINEDEBUG": "-all"}
        # python.exe under Wine cannot write to a regular file: its stderr through a pipe
        self._proc = await asyncio.create_subprocess_exec(
            "wine", WIN_PY, "-m", "graceful", "serve", *serve_args(self.loop), env=env,
            cwd=ROOT, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        self._relay = asyncio.create_task(self._copy())
        ready = await wait_event(self.log, "supervisor.ready", 180)
        self.port = int((await wait_event(self.log, "server.started", 30))["port"])
        self.pid = int(ready["pid"])

    async def _copy(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        with open(self.log, "ab") as out:
            async for line in self._proc.stderr:
                out.write(line)
                out.flush()

    async def reload(self) -> tuple[int, str]:
        return await wine(self.env, WIN_PY, "-m", "graceful", "restart", "--pid",
                          str(self.pid), timeout=300)

    async def os_pid(self) -> int | None:
        return self.pid if self._proc is not None and self._proc.returncode is None else None

    async def stop(self) -> int:
        """Ctrl+C needs a console: the supervisor is ended by its pid (its workers see their
        stdin close, drain and exit); what is left of the process group after 60 s is
        killed. The load has stopped by then: nothing is in flight."""
        await wine(self.env, "taskkill", "/F", "/PID", str(self.pid), timeout=60)
        if self._proc is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), 60)
            await asyncio.sleep(5)  # the workers' drain
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            await self._proc.wait()
        if self._relay is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._relay, 10)
        return self._proc.returncode if self._proc is not None else -1
