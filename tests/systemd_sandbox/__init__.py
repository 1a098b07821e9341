"""The shipped unit (deploy/systemd) under this machine's real systemd.

start-systemd.sh starts /usr/lib/systemd/systemd as PID 1 of private pid, mount, cgroup,
uts, ipc and network namespaces (a minimal unit set, no generators, no D-Bus, no journald)
in about 0.2 s; stop-systemd.sh ends it by its pid. `Sandbox` puts the shipped
graceful-app.service and .socket, unchanged, in the folder systemd reads as
/etc/systemd/system, and /opt/app holds what their ExecStart= and WorkingDirectory= name: the
test app as app.py and venv/, a link to this interpreter's environment. A drop-in changes only
what the sandbox needs (see `_DROP_IN`). systemd's own log, at debug level, is
`state/systemd.log`: which process it signalled, when, and why.

The network namespace has only loopback: `Sandbox.client()` runs client.py inside it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
UNIT = "graceful-app.service"
SYSTEMD = Path("/usr/lib/systemd/systemd")
URL = "http://127.0.0.1:8080"  # graceful-app.socket's ListenStream=
CHECKPOINT = "graceful-app/state.ckpt"  # under /var/lib, as ExecStart= names it
APP_LOG = "graceful-app.log"  # under /var/lib

_DROP_IN = """\
[Service]
# No journald in the sandbox: graceful's log goes to a file, read when a test fails.
StandardOutput=append:/var/lib/graceful-app.log
StandardError=inherit
"""
_DROP_IN_ROOT = """\
# This interpreter lives under a folder other users cannot enter (/root): a dynamic user
# could not start it (status 203/EXEC).
DynamicUser=no
"""


def unavailable() -> str | None:
    """Why the sandbox cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "a real systemd needs Linux"
    if os.geteuid() != 0:
        return "the systemd sandbox needs root (namespaces, cgroups, mounts)"
    if not SYSTEMD.exists():
        return f"no {SYSTEMD}"
    if not _cgroup2():
        return "no cgroup2 hierarchy (/sys/fs/cgroup/unified or a unified /sys/fs/cgroup)"
    for tool in ("unshare", "nsenter", "setsid"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not (Path(sys.prefix) / "bin" / "graceful").exists():
        return f"graceful's command is not in {sys.prefix}/bin"
    return None


def _cgroup2() -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1:3] in (["/sys/fs/cgroup/unified", "cgroup2"],
                                         ["/sys/fs/cgroup", "cgroup2"])
                   for line in mounts)


def _others_can_run(path: Path) -> bool:
    """Every folder up to `path` can be entered by any user."""
    return all(os.stat(folder).st_mode & stat.S_IXOTH
               for folder in [path.resolve(), *path.resolve().parents])


class Sandbox:
    """A running systemd with the shipped unit installed (not started)."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.pid1 = int((state / "pid1").read_text())
        version = subprocess.run([SYSTEMD, "--version"], capture_output=True, text=True,
                                 timeout=10)
        self.version = version.stdout.partition("\n")[0]  # "systemd 252 (252.38-1~deb12u1)"
        self._clients: list[Client] = []

    @classmethod
    def start(cls, root: Path) -> Sandbox:
        state, units = root / "state", root / "units"
        app = state / "opt" / "app"
        app.mkdir(parents=True)
        shutil.copy(HERE / "app.py", app / "app.py")
        (app / "venv").symlink_to(Path(sys.prefix))
        (units / f"{UNIT}.d").mkdir(parents=True)
        for unit in (ROOT / "deploy" / "systemd").iterdir():
            shutil.copy(unit, units / unit.name)
        interpreter = Path(os.path.realpath(sys.executable))
        reachable = all(_others_can_run(path)
                        for path in (interpreter.parent, Path(sys.prefix), ROOT))
        (units / f"{UNIT}.d" / "sandbox.conf").write_text(
            _DROP_IN + ("" if reachable else _DROP_IN_ROOT))
        started = subprocess.run([HERE / "start-systemd.sh", state, units],
                                 capture_output=True, text=True, timeout=60)
        if started.returncode != 0:
            subprocess.run([HERE / "stop-systemd.sh", state], capture_output=True, timeout=60)
            raise RuntimeError(f"start-systemd.sh failed: {started.stderr}")
        return cls(state)

    def stop(self) -> None:
        """End every client, then systemd (by its pid) and everything under it."""
        for client in self._clients:
            client.end()
        subprocess.run([HERE / "stop-systemd.sh", self.state], capture_output=True,
                       timeout=90)

    def systemctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["nsenter", "-t", str(self.pid1), "-m", "-p", "-n",
                               "systemctl", "--no-pager", *args],
                              capture_output=True, text=True, timeout=timeout)

    def show(self, *properties: str) -> dict[str, str]:
        shown = self.systemctl("show", "-p", ",".join(properties), UNIT)
        return dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)

    def log(self) -> str:
        """systemd's log so far."""
        return (self.state / "systemd.log").read_text(errors="replace")

    def wait_log(self, pattern: str, since: int, timeout: float) -> str:
        """The first line of systemd's log after offset `since` that matches `pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(f"^.*{pattern}.*$", self.log()[since:], re.MULTILINE)
            if found:
                return found.group()
            if time.monotonic() > deadline:
                raise TimeoutError(f"systemd did not log {pattern!r} in {timeout} s")
            time.sleep(0.02)

    def app_log(self) -> str:
        path = self.state / "varlib" / APP_LOG
        return path.read_text(errors="replace") if path.exists() else ""

    def checkpoint(self) -> dict[str, Any] | None:
        """The state in the checkpoint file as `graceful checkpoint show` prints it (None if
        no checkpoint was written)."""
        path = self.state / "varlib" / CHECKPOINT
        if not path.exists():
            return None
        shown = subprocess.run([Path(sys.prefix) / "bin" / "graceful", "checkpoint", "show",
                                path], capture_output=True, text=True, timeout=30, check=True)
        return json.loads(shown.stdout)

    def client(self) -> Client:
        client = Client(self.pid1)
        self._clients.append(client)
        return client


class Client:
    """client.py in the sandbox's network namespace: `ask(command)` answers its JSON line."""

    def __init__(self, pid1: int) -> None:
        # nsenter without -p execs the command: this pid is the client's own.
        self.process = subprocess.Popen(
            ["nsenter", "-t", str(pid1), "-n", sys.executable, str(HERE / "client.py"), URL],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def ask(self, command: str, timeout: float = 20) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        try:
            answer: dict[str, Any] = json.loads(self._lines.get(timeout=timeout))
        except queue.Empty:
            raise TimeoutError(f"client.py did not answer {command!r} in {timeout} s") from None
        if "error" in answer:
            raise RuntimeError(f"client.py {command!r}: {answer['error']}")
        return answer

    def end(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
